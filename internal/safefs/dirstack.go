package safefs

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openWindow is how many directory descriptors a walk keeps open at most (besides the caller's). A pod can nest
// directories as deep as it likes (mkdirat relative to a descriptor has no PATH_MAX), so one descriptor per level
// would let it exhaust keeplog's descriptors; deeper frames are released and reopened when the walk returns to them.
const openWindow = 64

// frame is one directory on the way from the walk's start to where it is.
type frame struct {
	rel   string   // slash-separated path below the start ("" for the start)
	name  string   // its name in the parent frame
	depth int      // number of components of rel
	dir   *os.File // nil while released
	ino   uint64   // to recognise the directory when it is reopened
	names []string // entries not visited yet
}

// dirStack holds the frames of an iterative walk. Frame 0 is the caller's directory and never closed here.
type dirStack struct {
	mount  MountID
	frames []*frame
	open   int // descriptors of frames[1:] open now
}

func (s *dirStack) top() *frame { return s.frames[len(s.frames)-1] }

// push adds an open directory and releases the descriptor of the frame that fell out of the window.
func (s *dirStack) push(f *frame) {
	s.frames = append(s.frames, f)
	s.open++
	if i := len(s.frames) - 1 - openWindow; i > 0 {
		s.release(i)
	}
}

// pop removes the top frame and closes its descriptor.
func (s *dirStack) pop() {
	n := len(s.frames) - 1
	if n > 0 {
		s.release(n)
	}
	s.frames = s.frames[:n]
}

func (s *dirStack) release(i int) {
	if f := s.frames[i]; f.dir != nil {
		f.dir.Close()
		f.dir = nil
		s.open--
	}
}

// closeAll closes every descriptor the stack opened.
func (s *dirStack) closeAll() {
	for i := len(s.frames) - 1; i > 0; i-- {
		s.release(i)
	}
	s.frames = nil
}

// dirOf returns the descriptor of frame i, reopening it (and the released frames above it) one component at a time
// from the nearest open ancestor: never through a symlink, never onto another mount, and only when each is still
// the directory that was listed (same inode); otherwise the directory was moved or replaced since and the error
// says so.
func (s *dirStack) dirOf(i int) (*os.File, error) {
	j := i
	for s.frames[j].dir == nil {
		j--
	}
	for k := j + 1; k <= i; k++ {
		f := s.frames[k]
		d, err := openSubdirOn(s.frames[k-1].dir, f.name, s.mount)
		if err != nil {
			return nil, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(d.Fd()), &st); err != nil || st.Ino != f.ino {
			d.Close()
			return nil, fmt.Errorf("directory %s was replaced while it was walked", d.Name())
		}
		f.dir = d
		s.open++
		if k-1 > 0 && k-1 <= i-openWindow {
			s.release(k - 1)
		}
	}
	return s.frames[i].dir, nil
}

// newFrame opens name below parent (on the stack's mount) and lists it.
func (s *dirStack) newFrame(parent *os.File, name, rel string, depth int) (*frame, error) {
	d, err := openSubdirOn(parent, name, s.mount)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &st); err != nil {
		d.Close()
		return nil, &os.PathError{Op: "fstat", Path: d.Name(), Err: err}
	}
	names, err := ReadDirNames(d)
	if err != nil {
		d.Close()
		return nil, err
	}
	return &frame{rel: rel, name: name, depth: depth, dir: d, ino: st.Ino, names: names}, nil
}

// joinRel appends name to a slash-separated relative path.
func joinRel(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "/" + name
}
