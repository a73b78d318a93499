package usage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/pkg/store"
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
	defer os.Remove(p)
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

// setImmutableTree sets or clears FS_IMMUTABLE_FL on dir and every directory and regular file below it, without
// following symlinks and leaving <dir>/.keeplog alone (keeplog writes there while the pod runs). It goes on after
// a failure and reports the first.
func setImmutableTree(dir string, on bool) error {
	var first error
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) && first == nil {
				first = err
			}
			return nil
		}
		if e.IsDir() && filepath.Dir(p) == dir && e.Name() == store.StateDirName {
			return fs.SkipDir
		}
		if !e.IsDir() && !e.Type().IsRegular() {
			return nil // symlinks, FIFOs, sockets, devices: they do not grow
		}
		if err := setImmutable(p, e.IsDir(), on); err != nil && !errors.Is(err, fs.ErrNotExist) && first == nil {
			first = err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return first
}

// setImmutable sets or clears the attribute of one file or directory, changing nothing when it is as wanted.
func setImmutable(path string, dir, on bool) error {
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOCTTY
	if dir {
		flags |= unix.O_DIRECTORY
	}
	fd, err := unix.Open(path, flags, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	attr, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return &fs.PathError{Op: "get attributes of", Path: path, Err: err}
	}
	want := attr &^ fsImmutableFL
	if on {
		want = attr | fsImmutableFL
	}
	if want == attr {
		return nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(want)); err != nil {
		return &fs.PathError{Op: "set immutable attribute on", Path: path, Err: err}
	}
	return nil
}

// IsImmutable reports whether the immutable attribute is set on path (for tests and diagnostics).
func IsImmutable(path string) (bool, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	attr, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return false, &fs.PathError{Op: "get attributes of", Path: path, Err: err}
	}
	return attr&fsImmutableFL != 0, nil
}
