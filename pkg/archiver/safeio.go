package archiver

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// podFS reaches files inside pod directories without ever following a
// symbolic link below the root: every component is opened with openat and
// O_NOFOLLOW, starting from the root directory (which the operator chose and
// is trusted).
type podFS struct {
	root string // absolute, symlinks resolved
}

func newPodFS(root string) (*podFS, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("archive root %q: %w", root, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("archive root %q: %w", root, err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("archive root %q: %w", root, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("archive root %q: not a directory", root)
	}
	return &podFS{root: real}, nil
}

// errNotRegular marks files that are not regular files (symlinks, FIFOs...).
var errNotRegular = errors.New("not a regular file")

// errOutside marks files that resolve to somewhere outside their pod directory.
var errOutside = errors.New("resolves outside its pod directory")

const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// splitRel checks a slash-separated relative path.
func splitRel(rel string) ([]string, error) {
	if rel == "" || strings.HasPrefix(rel, "/") {
		return nil, fmt.Errorf("path %q: not relative", rel)
	}
	comps := strings.Split(rel, "/")
	for _, c := range comps {
		if c == "" || c == "." || c == ".." {
			return nil, fmt.Errorf("path %q: bad component %q", rel, c)
		}
	}
	return comps, nil
}

// openDir opens <root>/<podDir>/<dirRel> (dirRel "" = the pod directory).
// The caller closes the returned descriptor.
func (p *podFS) openDir(podDir, dirRel string) (int, error) {
	if strings.ContainsRune(podDir, '/') || podDir == "" || podDir == "." || podDir == ".." {
		return -1, fmt.Errorf("pod directory %q: bad name", podDir)
	}
	fd, err := unix.Open(p.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: p.root, Err: err}
	}
	comps := []string{podDir}
	if dirRel != "" {
		more, err := splitRel(dirRel)
		if err != nil {
			unix.Close(fd)
			return -1, err
		}
		comps = append(comps, more...)
	}
	cur := p.root
	for _, c := range comps {
		cur = cur + "/" + c
		nfd, err := unix.Openat(fd, c, dirFlags, 0)
		unix.Close(fd)
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				return -1, fmt.Errorf("open directory %s: %w (symlink or not a directory)", cur, errNotRegular)
			}
			return -1, &os.PathError{Op: "open", Path: cur, Err: err}
		}
		fd = nfd
	}
	return fd, nil
}

func splitDirBase(rel string) (string, string) {
	dir, base := path.Split(rel)
	return strings.TrimSuffix(dir, "/"), base
}

// lstat stats <root>/<podDir>/<rel> without following symlinks anywhere.
func (p *podFS) lstat(podDir, rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if _, err := splitRel(rel); err != nil {
		return st, err
	}
	dir, base := splitDirBase(rel)
	dfd, err := p.openDir(podDir, dir)
	if err != nil {
		return st, err
	}
	defer unix.Close(dfd)
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, &os.PathError{Op: "lstat", Path: p.abs(podDir, rel), Err: err}
	}
	return st, nil
}

func (p *podFS) abs(podDir, rel string) string {
	if rel == "" {
		return p.root + "/" + podDir
	}
	return p.root + "/" + podDir + "/" + rel
}

// open opens a regular file for reading: O_NOFOLLOW on every component,
// O_NONBLOCK so that a FIFO cannot block us, then fstat (regular file only)
// and a check that the descriptor resolves inside the pod directory.
func (p *podFS) open(podDir, rel string) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	if _, err := splitRel(rel); err != nil {
		return nil, st, err
	}
	dir, base := splitDirBase(rel)
	dfd, err := p.openDir(podDir, dir)
	if err != nil {
		return nil, st, err
	}
	fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	unix.Close(dfd)
	name := p.abs(podDir, rel)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, st, fmt.Errorf("open %s: %w (a symlink)", name, errNotRegular)
		}
		return nil, st, &os.PathError{Op: "open", Path: name, Err: err}
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, st, &os.PathError{Op: "fstat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, st, fmt.Errorf("open %s: %w (mode %o)", name, errNotRegular, st.Mode&unix.S_IFMT)
	}
	// Resolve the descriptor: it must still be inside the pod directory.
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		unix.Close(fd)
		return nil, st, fmt.Errorf("resolve %s: %w", name, err)
	}
	if !strings.HasPrefix(target, p.abs(podDir, "")+"/") {
		unix.Close(fd)
		return nil, st, fmt.Errorf("open %s: %w (it is %s)", name, errOutside, target)
	}
	// Reads of a regular file never block; drop O_NONBLOCK anyway.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, st, fmt.Errorf("open %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), st, nil
}

// remove unlinks <root>/<podDir>/<rel> if it is still the file with inode ino.
func (p *podFS) remove(podDir, rel string, ino uint64) error {
	if _, err := splitRel(rel); err != nil {
		return err
	}
	dir, base := splitDirBase(rel)
	dfd, err := p.openDir(podDir, dir)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	name := p.abs(podDir, rel)
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "lstat", Path: name, Err: err}
	}
	if st.Ino != ino || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("remove %s: it is no longer the archived file (inode %d, want %d)", name, st.Ino, ino)
	}
	if err := unix.Unlinkat(dfd, base, 0); err != nil {
		return &os.PathError{Op: "unlink", Path: name, Err: err}
	}
	return nil
}

// writeFile atomically replaces <root>/<podDir>/<name> with data: a new
// temporary file (O_CREAT|O_EXCL|O_NOFOLLOW) in the same directory, fsync,
// renameat. A symlink planted at name is replaced, never followed.
func (p *podFS) writeFile(podDir, name string, data []byte, perm uint32) error {
	dfd, err := p.openDir(podDir, "")
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	var tmp string
	var fd int
	for i := 0; ; i++ {
		tmp = fmt.Sprintf("%s.tmp%d-%d", name, os.Getpid(), i)
		fd, err = unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EEXIST) || i > 100 {
			return &os.PathError{Op: "create", Path: p.abs(podDir, tmp), Err: err}
		}
		// A stale or planted temporary file: remove it (unlinkat never
		// follows) and try the next name.
		_ = unix.Unlinkat(dfd, tmp, 0)
	}
	f := os.NewFile(uintptr(fd), p.abs(podDir, tmp))
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = unix.Renameat(dfd, tmp, dfd, name)
		if werr != nil {
			werr = &os.PathError{Op: "rename", Path: p.abs(podDir, name), Err: werr}
		}
	}
	if werr != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fmt.Errorf("write %s: %w", p.abs(podDir, name), werr)
	}
	return nil
}

// entry is one thing found by walk.
type entry struct {
	rel  string
	st   unix.Stat_t
	kind uint32 // S_IFREG, S_IFDIR, S_IFLNK, ...
}

// walk lists everything below <root>/<podDir> without following symlinks,
// calling fn for each entry (directories before their contents). Depth is
// bounded.
func (p *podFS) walk(podDir string, fn func(e entry)) error {
	fd, err := p.openDir(podDir, "")
	if err != nil {
		return err
	}
	return p.walkFD(fd, podDir, "", 0, fn)
}

const maxDepth = 32

func (p *podFS) walkFD(fd int, podDir, prefix string, depth int, fn func(e entry)) error {
	f := os.NewFile(uintptr(fd), p.abs(podDir, prefix))
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("list %s: %w", f.Name(), err)
	}
	for _, n := range names {
		rel := n
		if prefix != "" {
			rel = prefix + "/" + n
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue // vanished
		}
		e := entry{rel: rel, st: st, kind: st.Mode & unix.S_IFMT}
		fn(e)
		if e.kind == unix.S_IFDIR && depth < maxDepth && !inOwnDir(rel) {
			cfd, err := unix.Openat(fd, n, dirFlags, 0)
			if err != nil {
				continue // replaced by a symlink or vanished: skip
			}
			if err := p.walkFD(cfd, podDir, rel, depth+1, fn); err != nil {
				continue
			}
		}
	}
	return nil
}
