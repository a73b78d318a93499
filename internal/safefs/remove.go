package safefs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// removeDepth is how deep RemoveAllAt descends before it moves a directory up to the top of the tree it removes
// (renameat on the same mount, cheap). Removal needs the parent's descriptor after a directory's contents are gone,
// so a walk with released frames would reopen them over and over; moving deep directories up keeps every level
// open and the work linear, however deep a pod nested them.
const removeDepth = openWindow / 2

// flattenedPrefix names the directories RemoveAllAt moved up; they are removed with the tree.
const flattenedPrefix = ".keeplog-rm-"

// RemoveAllAt deletes name below parent and everything below it, like os.RemoveAll but: it never follows a
// symlink (a link is unlinked itself), never enters a directory on another mount than parent's (it stops with an
// error wrapping ErrOtherMount that names the mount point, having deleted only what it reached before; unlinkat
// or rmdir of a mount point fails with EBUSY instead), and holds a bounded number of descriptors at any depth.
// parent itself is never removed. A missing name is not an error.
func RemoveAllAt(parent *os.File, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	path := filepath.Join(parent.Name(), name)
	st, err := Lstat(parent, name)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unlinkAt(parent, name, 0)
	}
	mount, err := MountOf(parent)
	if err != nil {
		return err
	}
	s := &dirStack{mount: mount}
	root, err := s.newFrame(parent, name, "", 0)
	if err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	s.frames = []*frame{root}
	err = (&remover{s: s, root: root}).run()
	s.closeAll()
	root.dir.Close()
	if err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	return unlinkAt(parent, name, unix.AT_REMOVEDIR)
}

// remover empties the tree of its stack's frame 0.
type remover struct {
	s       *dirStack
	root    *frame
	renamed int // directories moved up so far (their names)
}

// run deletes everything below the root frame, depth first: each directory once its contents are gone.
func (r *remover) run() error {
	for {
		top := r.s.top()
		if len(top.names) == 0 {
			if len(r.s.frames) == 1 {
				return nil
			}
			r.s.pop()
			if err := unlinkAt(r.s.top().dir, top.name, unix.AT_REMOVEDIR); err != nil {
				return err
			}
			continue
		}
		name := top.names[0]
		top.names = top.names[1:]
		if err := r.removeEntry(top, name); err != nil {
			return err
		}
	}
}

// removeEntry unlinks a non-directory, or enters a directory (moving it up first when it is deep).
func (r *remover) removeEntry(top *frame, name string) error {
	st, err := Lstat(top.dir, name)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unlinkAt(top.dir, name, 0)
	}
	if top.depth+1 >= removeDepth {
		return r.moveUp(top, name)
	}
	f, err := r.s.newFrame(top.dir, name, joinRel(top.rel, name), top.depth+1)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	r.s.push(f)
	return nil
}

// moveUp renames a deep directory (checked to be on the tree's mount) to the top of the tree, to be removed from
// there. RENAME_NOREPLACE: nothing is ever renamed over.
func (r *remover) moveUp(top *frame, name string) error {
	m, err := MountAt(top.dir, name)
	if err != nil {
		return err
	}
	if m != r.s.mount {
		return fmt.Errorf("directory %s: %w (mount %d; the tree is on mount %d)", filepath.Join(top.dir.Name(), name), ErrOtherMount, m.Mnt, r.s.mount.Mnt)
	}
	for {
		r.renamed++
		to := flattenedPrefix + strconv.Itoa(r.renamed)
		err := unix.Renameat2(int(top.dir.Fd()), name, int(r.root.dir.Fd()), to, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "move up to " + filepath.Join(r.root.dir.Name(), to), Path: filepath.Join(top.dir.Name(), name), Err: err}
		}
		r.root.names = append(r.root.names, to)
		return nil
	}
}

// unlinkAt removes name below dir (flags 0 or AT_REMOVEDIR); an entry already gone is fine.
func unlinkAt(dir *os.File, name string, flags int) error {
	if err := unix.Unlinkat(int(dir.Fd()), name, flags); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "unlink", Path: filepath.Join(dir.Name(), name), Err: err}
	}
	return nil
}
