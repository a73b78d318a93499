package archiver

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/safefs"
	"github.com/keeplog/keeplog/pkg/api"
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
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("archive root %q: %w", root, err)
	}
	st, err := os.Stat(resolved)
	if err != nil {
		return nil, fmt.Errorf("archive root %q: %w", root, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("archive root %q: not a directory", root)
	}
	return &podFS{root: resolved}, nil
}

// errNotRegular marks files that are not regular files (symlinks, FIFOs...) and paths through a symlink.
var errNotRegular = safefs.ErrNotRegular

// errOutside marks files that resolve to somewhere outside their pod directory.
var errOutside = errors.New("resolves outside its pod directory")

// splitRel checks a slash-separated relative path.
func splitRel(rel string) ([]string, error) {
	if rel == "" || strings.HasPrefix(rel, "/") {
		return nil, fmt.Errorf("path %q: not relative", rel)
	}
	comps := strings.Split(rel, "/")
	for _, c := range comps {
		if err := safefs.CheckName(c); err != nil {
			return nil, fmt.Errorf("path %q: %w", rel, err)
		}
	}
	return comps, nil
}

// openDir opens <root>/<podDir>/<dirRel> (dirRel "" = the pod directory), one component at a time, never through a
// symlink and, below the pod directory, never onto another mount (safefs.ErrOtherMount): a file reached through a
// mount inside a pod directory is not the pod's. The caller closes it.
func (p *podFS) openDir(podDir, dirRel string) (*os.File, error) {
	if err := safefs.CheckName(podDir); err != nil {
		return nil, fmt.Errorf("pod directory: %w", err)
	}
	var comps []string
	if dirRel != "" {
		more, err := splitRel(dirRel)
		if err != nil {
			return nil, err
		}
		comps = more
	}
	root, err := safefs.OpenDir(p.root)
	if err != nil {
		return nil, err
	}
	d, err := safefs.OpenDirAt(root, podDir, false)
	root.Close()
	if err != nil {
		return nil, err
	}
	for _, c := range comps {
		next, err := safefs.OpenSubdirAt(d, c)
		d.Close()
		if err != nil {
			return nil, err
		}
		d = next
	}
	return d, nil
}

// mountsIn lists the mount points (absolute paths) at or below <root>/<podDir>, from the mount table. walk never
// enters them; a check that must know the whole pod directory (is it archived? may it be deleted?) treats a
// non-empty answer as "not everything is known" and says which.
func (p *podFS) mountsIn(podDir string) ([]string, error) {
	d, err := p.openDir(podDir, "")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return safefs.MountsBelow(d)
}

func splitDirBase(rel string) (string, string) {
	dir, base := path.Split(rel)
	return strings.TrimSuffix(dir, "/"), base
}

// lstat stats <root>/<podDir>/<rel> without following symlinks anywhere.
func (p *podFS) lstat(podDir, rel string) (unix.Stat_t, error) {
	if _, err := splitRel(rel); err != nil {
		return unix.Stat_t{}, err
	}
	dir, base := splitDirBase(rel)
	d, err := p.openDir(podDir, dir)
	if err != nil {
		return unix.Stat_t{}, err
	}
	defer d.Close()
	return safefs.Lstat(d, base)
}

func (p *podFS) abs(podDir, rel string) string {
	if rel == "" {
		return p.root + "/" + podDir
	}
	return p.root + "/" + podDir + "/" + rel
}

// open opens a regular file for reading (safefs.OpenFileAt: no symlink, no FIFO) and checks that the descriptor
// resolves inside the pod directory.
func (p *podFS) open(podDir, rel string) (*os.File, unix.Stat_t, error) {
	if _, err := splitRel(rel); err != nil {
		return nil, unix.Stat_t{}, err
	}
	dir, base := splitDirBase(rel)
	d, err := p.openDir(podDir, dir)
	if err != nil {
		return nil, unix.Stat_t{}, err
	}
	f, st, err := safefs.OpenFileAt(d, base, unix.O_RDONLY)
	d.Close()
	if err != nil {
		return nil, st, err
	}
	target, err := safefs.ResolvedPath(f)
	if err != nil {
		f.Close()
		return nil, st, err
	}
	if !strings.HasPrefix(target, p.abs(podDir, "")+"/") {
		f.Close()
		return nil, st, fmt.Errorf("open %s: %w (it is %s)", p.abs(podDir, rel), errOutside, target)
	}
	return f, st, nil
}

// remove unlinks <root>/<podDir>/<rel> if it is still the file with inode ino.
func (p *podFS) remove(podDir, rel string, ino uint64) error {
	if _, err := splitRel(rel); err != nil {
		return err
	}
	dir, base := splitDirBase(rel)
	d, err := p.openDir(podDir, dir)
	if err != nil {
		return err
	}
	defer d.Close()
	name := p.abs(podDir, rel)
	st, err := safefs.Lstat(d, base)
	if err != nil {
		return err
	}
	if st.Ino != ino || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("remove %s: it is no longer the archived file (inode %d, want %d)", name, st.Ino, ino)
	}
	if err := unix.Unlinkat(int(d.Fd()), base, 0); err != nil {
		return &os.PathError{Op: "unlink", Path: name, Err: err}
	}
	return nil
}

// writeOwnFile replaces name in the pod directory's .keeplog/ (made root:root 0755 when missing, as pkg/podinfo
// makes it). A .keeplog/ that root does not own was forged by the pod: nothing is written there (podinfo moves it
// aside at its next write).
func (p *podFS) writeOwnFile(pod, name string, data []byte) error {
	pd, err := p.openDir(pod, "")
	if err != nil {
		return err
	}
	defer pd.Close()
	d, err := safefs.OpenDirAt(pd, api.KeeplogDir, true)
	if err != nil {
		return err
	}
	defer d.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", d.Name(), err)
	}
	if st.Uid != 0 {
		return fmt.Errorf("%s is owned by uid %d, not root: not written", d.Name(), st.Uid)
	}
	if st.Mode&0o777 == 0o700 { // just made by OpenDirAt
		if err := unix.Fchmod(int(d.Fd()), 0o755); err != nil {
			return fmt.Errorf("chmod %s: %w", d.Name(), err)
		}
	}
	return safefs.WriteFileAt(d, name, data, 0o644, nil)
}

// entry is one thing found by walk.
type entry struct {
	rel  string
	st   unix.Stat_t
	kind uint32 // S_IFREG, S_IFDIR, S_IFLNK, ...
}

// walkResult is what a walk did not enter (safefs.WalkResult): Mounts are directories on another mount than the
// pod directory, TooDeep directories below safefs.MaxWalkDepth, both as paths relative to the pod directory. Files
// there were not seen, so a caller must not conclude that the pod directory is archived (or may be deleted) while
// either is non-empty; Complete() says whether both are empty.
type walkResult = safefs.WalkResult

// walk lists everything below <root>/<podDir> without following symlinks, calling fn for each entry (directories
// before their contents), at any depth (safefs.Walk: bounded descriptors, no silent limit). It never enters a
// directory on another mount nor keeplog's own directory; what it did not enter (other than keeplog's own) is
// returned.
func (p *podFS) walk(podDir string, fn func(e entry)) (walkResult, error) {
	d, err := p.openDir(podDir, "")
	if err != nil {
		return walkResult{}, err
	}
	return p.walkDir(d, podDir, "", fn)
}

// walkDir walks below the open directory d of podDir (prefix is its path inside the pod directory, "" for the pod
// directory itself) like walk, and closes d.
func (p *podFS) walkDir(d *os.File, podDir, prefix string, fn func(e entry)) (walkResult, error) {
	defer d.Close()
	res, err := safefs.Walk(d, prefix, func(se safefs.Entry) bool {
		e := entry{rel: se.Rel, st: se.Stat, kind: se.Kind()}
		fn(e)
		return !inOwnDir(e.rel)
	})
	if err != nil {
		return res, fmt.Errorf("walk pod directory %s: %w", p.abs(podDir, prefix), err)
	}
	return res, nil
}
