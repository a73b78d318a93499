package usage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/safefs"
	"github.com/keeplog/keeplog/pkg/api"
)

// Enforcer stops a pod directory from growing and lets it grow again. Block is called again while the volume stays
// over its limit (for what appeared since), so it must be idempotent; Blocked lists what is blocked now, so a
// restarted plugin knows what to release. A project-quota implementation would set the quota in Block (or once at
// publish) and clear it in Unblock.
type Enforcer interface {
	Name() string
	Block(podDir string) error
	Unblock(podDir string) error
	Blocked() ([]string, error)
}

// fsImmutableFL is FS_IMMUTABLE_FL from <linux/fs.h> (x/sys/unix does not define it).
const fsImmutableFL = 0x00000010

// AttrEnforcer blocks a pod directory by setting the immutable attribute (FS_IMMUTABLE_FL, chattr +i) on it and on
// every directory and regular file below it, except keeplog's own .keeplog directory. The attribute lives on the
// inode, so it acts inside the container's own mount too: writes fail with EPERM even through descriptors opened
// before, and no file can be created, renamed, truncated or deleted. It is soft: a write that is under way when the
// block comes finishes, and files appearing between two checks are caught by the next Block. It needs
// CAP_LINUX_IMMUTABLE and a filesystem with the attribute (ext4, xfs, btrfs; not tmpfs or overlayfs).
//
// Which directories are blocked is recorded as marker files in stateDir, written before the first attribute is set
// and removed after the last one is cleared, so a crash never leaves a directory blocked that no marker names.
type AttrEnforcer struct {
	stateDir string
}

// NewAttrEnforcer keeps its markers in stateDir (created 0700 if missing).
func NewAttrEnforcer(stateDir string) (*AttrEnforcer, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create enforcer state directory %s: %w", stateDir, err)
	}
	return &AttrEnforcer{stateDir: stateDir}, nil
}

// Probe checks that the attribute can be set and cleared on the filesystem that holds the state directory (the
// root's): not on tmpfs or overlayfs, and not without CAP_LINUX_IMMUTABLE.
func (e *AttrEnforcer) Probe() error {
	p := filepath.Join(e.stateDir, ".probe")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		return fmt.Errorf("probe the immutable attribute: %w", err)
	}
	defer func() { _ = os.Remove(p) }() // best effort: the probe's own verdict is what Probe returns
	if err := setImmutable(p, false, true); err != nil {
		return fmt.Errorf("probe the immutable attribute: %w", err)
	}
	if err := setImmutable(p, false, false); err != nil {
		return fmt.Errorf("probe the immutable attribute: clear it again on %s: %w", p, err)
	}
	return nil
}

// Name says what the enforcer does.
func (e *AttrEnforcer) Name() string { return "immutable-attribute" }

// Block sets the immutable attribute below podDir (an absolute path).
func (e *AttrEnforcer) Block(podDir string) error {
	marker, err := e.marker(podDir)
	if err != nil {
		return err
	}
	if err := os.WriteFile(marker, []byte(podDir+"\n"), 0o600); err != nil {
		return fmt.Errorf("record block of %s: %w", podDir, err)
	}
	return setImmutableTree(podDir, true)
}

// Unblock clears the attribute below podDir; a directory that is gone is unblocked already.
func (e *AttrEnforcer) Unblock(podDir string) error {
	marker, err := e.marker(podDir)
	if err != nil {
		return err
	}
	if err := setImmutableTree(podDir, false); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("forget block of %s: %w", podDir, err)
	}
	return nil
}

// Blocked lists the pod directories (absolute paths) blocked now.
func (e *AttrEnforcer) Blocked() ([]string, error) {
	entries, err := os.ReadDir(e.stateDir)
	if err != nil {
		return nil, fmt.Errorf("list blocked directories in %s: %w", e.stateDir, err)
	}
	var out []string
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(e.stateDir, en.Name()))
		if err != nil {
			return nil, fmt.Errorf("read block marker %s: %w", en.Name(), err)
		}
		out = append(out, strings.TrimSpace(string(data)))
	}
	return out, nil
}

func (e *AttrEnforcer) marker(podDir string) (string, error) {
	name := filepath.Base(podDir)
	if !filepath.IsAbs(podDir) || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("%q is not a pod directory", podDir)
	}
	return filepath.Join(e.stateDir, name), nil
}

// setImmutableTree sets or clears FS_IMMUTABLE_FL on podDir and every directory and regular file below it, leaving
// <podDir>/.keeplog alone (keeplog writes there while the pod runs). The pod writes this tree, so it is walked
// through internal/safefs, relative to open directories: no symlink is followed, no other mount is entered, and
// nothing but a directory (opened O_DIRECTORY) or a regular file (proven on an O_PATH descriptor first) is ever
// opened, so a device node or FIFO a pod swaps in is never opened. It goes on after a failure and reports the first.
func setImmutableTree(podDir string, on bool) error {
	parent, err := safefs.OpenDir(filepath.Dir(podDir)) // keeplog's root: trusted
	if err != nil {
		return err
	}
	defer parent.Close()
	top, err := safefs.OpenDirAt(parent, filepath.Base(podDir), false)
	if err != nil {
		return err
	}
	defer top.Close()
	first := setFlag(top, on)
	if err := immutableBelow(top, on, 0); err != nil && first == nil {
		first = err
	}
	return first
}

// maxImmutableDepth bounds the recursion (one descriptor per level) as the usage walk does.
const maxImmutableDepth = maxDepth

// immutableBelow sets or clears the attribute on what dir holds; at depth 0 it skips keeplog's own directory.
func immutableBelow(dir *os.File, on bool, depth int) error {
	names, err := safefs.ReadDirNames(dir)
	if err != nil {
		return err
	}
	var first error
	keep := func(err error) {
		if err != nil && !errors.Is(err, fs.ErrNotExist) && first == nil {
			first = err
		}
	}
	for _, name := range names {
		if depth == 0 && name == api.KeeplogDir {
			continue
		}
		st, err := safefs.Lstat(dir, name)
		if err != nil {
			continue // vanished
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			sub, err := safefs.OpenSubdirAt(dir, name)
			if errors.Is(err, safefs.ErrOtherMount) || errors.Is(err, safefs.ErrNotRegular) {
				continue // a mount inside the pod directory is not its own; replaced since the lstat
			}
			if err != nil {
				keep(err)
				continue
			}
			keep(setFlag(sub, on))
			if depth+1 < maxImmutableDepth {
				keep(immutableBelow(sub, on, depth+1))
			}
			sub.Close()
		case unix.S_IFREG:
			keep(setImmutableAt(dir, name, on))
		default: // symlinks, FIFOs, sockets, devices: they do not grow, and are never opened
		}
	}
	return first
}

// setImmutableAt sets or clears the attribute of the regular file name below dir, on a descriptor OpenFileAt
// reopened from an O_PATH one proven to be a regular file: a name swapped for a device node or FIFO since it was
// listed is refused (safefs.ErrNotRegular) without being opened.
func setImmutableAt(dir *os.File, name string, on bool) error {
	f, _, err := safefs.OpenFileAt(dir, name, unix.O_RDONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	return setFlag(f, on)
}

// openEntry opens path (its parent trusted: keeplog's own directories, or a test's) as a directory or a regular
// file, never anything else.
func openEntry(path string, dir bool) (*os.File, error) {
	parent, err := safefs.OpenDir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	if dir {
		return safefs.OpenDirAt(parent, filepath.Base(path), false)
	}
	f, _, err := safefs.OpenFileAt(parent, filepath.Base(path), unix.O_RDONLY)
	return f, err
}

// setImmutable sets or clears the attribute of one directory or regular file (Probe's file, tests).
func setImmutable(path string, dir, on bool) error {
	f, err := openEntry(path, dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return setFlag(f, on)
}

// setFlag sets or clears FS_IMMUTABLE_FL through an open descriptor, changing nothing when it is as wanted.
func setFlag(f *os.File, on bool) error {
	fd := int(f.Fd())
	attr, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return &fs.PathError{Op: "get attributes of", Path: f.Name(), Err: err}
	}
	want := attr &^ fsImmutableFL
	if on {
		want = attr | fsImmutableFL
	}
	if want == attr {
		return nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(want)); err != nil {
		return &fs.PathError{Op: "set immutable attribute on", Path: f.Name(), Err: err}
	}
	return nil
}

// IsImmutable reports whether the immutable attribute is set on path, a directory or a regular file (for tests and
// diagnostics); anything else is refused without being opened.
func IsImmutable(path string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false, &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	f, err := openEntry(path, st.Mode&unix.S_IFMT == unix.S_IFDIR)
	if err != nil {
		return false, err
	}
	defer f.Close()
	attr, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return false, &fs.PathError{Op: "get attributes of", Path: path, Err: err}
	}
	return attr&fsImmutableFL != 0, nil
}
