// Package safefs reaches files inside directories that pods write to without ever following a symbolic link: every
// name is one path component opened relative to an already open directory (openat) with O_NOFOLLOW, files are
// checked to be regular files through their descriptor, and writes go to a new temporary file that is renamed over
// the name (rename replaces a symlink itself, never its target). The archiver and the pod description both use it.
package safefs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotRegular marks a name that is a symlink, or not the kind of entry asked for (a regular file, a directory).
var ErrNotRegular = errors.New("not a regular file or directory")

// CheckName accepts one path component: not empty, not . or .., no slash or NUL, at most 255 bytes.
func CheckName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return fmt.Errorf("%q is not a single path component", name)
	}
	for _, c := range []byte(name) {
		if c == 0 || c == '/' {
			return fmt.Errorf("%q is not a single path component", name)
		}
	}
	return nil
}

// OpenDir opens a trusted directory (one that pods cannot write to, such as keeplog's root), following symlinks.
func OpenDir(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// OpenDirAt opens name below dir as a directory, never through a symlink (ErrNotRegular). With create, a missing
// directory is made with mode 0700 (the caller sets the mode it wants through the descriptor).
func OpenDirAt(dir *os.File, name string, create bool) (*os.File, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	path := filepath.Join(dir.Name(), name)
	for attempt := 0; ; attempt++ {
		fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			return os.NewFile(uintptr(fd), path), nil
		}
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("open directory %s (symlinks refused): %w: %w", path, ErrNotRegular, err)
		}
		if !errors.Is(err, unix.ENOENT) || !create || attempt > 0 {
			return nil, fmt.Errorf("open directory %s (symlinks refused): %w", path, err)
		}
		if err := unix.Mkdirat(int(dir.Fd()), name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, &os.PathError{Op: "create directory", Path: path, Err: err}
		}
	}
}

// OpenFileAt opens name below dir with flag (O_RDONLY, O_RDWR, ...; no O_CREAT) only when it is a regular file: never
// through a symlink, and without blocking on a FIFO (O_NONBLOCK while opening, cleared after). It returns the
// file's stat from the descriptor.
func OpenFileAt(dir *os.File, name string, flag int) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	if err := CheckName(name); err != nil {
		return nil, st, err
	}
	path := filepath.Join(dir.Name(), name)
	fd, err := unix.Openat(int(dir.Fd()), name, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, st, fmt.Errorf("open %s (symlinks refused): %w: %w", path, ErrNotRegular, err)
	}
	if err != nil {
		return nil, st, fmt.Errorf("open %s (symlinks refused): %w", path, err)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, st, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, st, fmt.Errorf("open %s: %w (mode %o)", path, ErrNotRegular, st.Mode&unix.S_IFMT)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, st, &os.PathError{Op: "clear O_NONBLOCK on", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), st, nil
}

// CreateAt creates name below dir for reading and writing with perm; O_EXCL|O_NOFOLLOW: an existing entry, symlink
// or not, is never reused.
func CreateAt(dir *os.File, name string, perm uint32) (*os.File, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	path := filepath.Join(dir.Name(), name)
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, &os.PathError{Op: "create", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// WriteFileAt replaces name below dir with data atomically: a temporary file created with O_EXCL|O_NOFOLLOW in the
// same directory (prepare, when not nil, may set its owner or mode first), written, fsynced, renamed over name, and
// the directory fsynced. A symlink planted at name is replaced, never followed.
func WriteFileAt(dir *os.File, name string, data []byte, perm uint32, prepare func(*os.File) error) error {
	if err := CheckName(name); err != nil {
		return err
	}
	path := filepath.Join(dir.Name(), name)
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("temp name for %s: %w", path, err)
	}
	tmp := tmpPrefix + hex.EncodeToString(rnd[:]) + "-" + name
	if len(tmp) > 255 {
		tmp = tmp[:255]
	}
	f, err := CreateAt(dir, tmp, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	committed := false
	defer func() {
		if !committed {
			f.Close()
			_ = unix.Unlinkat(int(dir.Fd()), tmp, 0)
		}
	}()
	if prepare != nil {
		if err := prepare(f); err != nil {
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.Name(), err)
	}
	if err := unix.Renameat(int(dir.Fd()), tmp, int(dir.Fd()), name); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	committed = true
	if err := unix.Fsync(int(dir.Fd())); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir.Name(), err)
	}
	return nil
}

// tmpPrefix starts the names of WriteFileAt's temporary files: .tmp-<12 hex digits>-<name>.
const tmpPrefix = ".tmp-"

// IsTempOf reports whether entry is a temporary file of WriteFileAt for name (what a crash can leave behind).
func IsTempOf(entry, name string) bool {
	rest, ok := strings.CutPrefix(entry, tmpPrefix)
	if !ok || len(rest) < 13 || rest[12] != '-' {
		return false
	}
	if len(entry) == 255 { // cut at the longest name a filesystem takes
		return strings.HasPrefix(name, rest[13:])
	}
	return rest[13:] == name
}

// ReadDirNames lists dir's entries through a second descriptor, so that dir's own offset is untouched.
func ReadDirNames(dir *os.File) ([]string, error) {
	fd, err := unix.Openat(int(dir.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "reopen", Path: dir.Name(), Err: err}
	}
	f := os.NewFile(uintptr(fd), dir.Name())
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir.Name(), err)
	}
	return names, nil
}

// Lstat stats name below dir without following a symlink.
func Lstat(dir *os.File, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := CheckName(name); err != nil {
		return st, err
	}
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, &os.PathError{Op: "lstat", Path: filepath.Join(dir.Name(), name), Err: err}
	}
	return st, nil
}

// ExistsAt reports whether name exists below dir (as anything; symlinks are not followed).
func ExistsAt(dir *os.File, name string) bool {
	_, err := Lstat(dir, name)
	return err == nil
}

// ResolvedPath is the path the kernel resolved for an open file (/proc/self/fd), to check where it really is.
func ResolvedPath(f *os.File) (string, error) {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		return "", fmt.Errorf("resolve the path of %s: %w", f.Name(), err)
	}
	return p, nil
}
