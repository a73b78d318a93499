// Package safefs reaches files inside directories that pods write to. keeplog runs as root on those trees, so it
// touches untrusted files only as regular files on the tree's own mount:
//   - no symlink is ever followed: every name is one path component opened relative to an already open directory
//     (openat) with O_NOFOLLOW, and writes go to a new temporary file renamed over the name (rename replaces a
//     symlink itself, never its target);
//   - nothing but a regular file or a directory is ever opened: a file's type is proven on an O_PATH descriptor
//     before the inode is opened for real (OpenFileAt), so a device node or FIFO a pod swaps in is never opened;
//   - no mount is crossed: walks and removals compare st_dev and the mount ID (statx) of every directory they enter
//     with the tree's (OpenSubdirAt, Walk, RemoveAllAt), and MountsBelow reads the mount table for a check up front.
//
// The archiver, the pod description, the log copier and the store's removals all use it.
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

// OpenFileAt opens name below dir with flag (O_RDONLY, O_RDWR, ...; no O_CREAT) only when it is a regular file, and
// never through a symlink. It returns the file's stat from the descriptor.
//
// The entry's type is proven before anything opens it for real: opening a device node has side effects (opening a
// watchdog arms it, a tape rewinds, a FIFO blocks or wakes its writer) and a pod can swap one in at any time. So
// the name is first opened with O_PATH|O_NOFOLLOW (which runs no driver code and generates no IN_OPEN), that
// descriptor is fstat'ed and must be S_IFREG, and only then is the same inode reopened through /proc/self/fd/N
// with the wanted flags; a last fstat checks that the reopened descriptor is the proven inode (dev and ino).
func OpenFileAt(dir *os.File, name string, flag int) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	if err := CheckName(name); err != nil {
		return nil, st, err
	}
	path := filepath.Join(dir.Name(), name)
	if flag&(unix.O_CREAT|unix.O_PATH|unix.O_DIRECTORY|unix.O_TMPFILE) != 0 {
		return nil, st, fmt.Errorf("open %s: flags %#x not allowed (only existing regular files are opened)", path, flag)
	}
	pfd, pst, err := provenRegular(dir, name, path)
	if err != nil {
		return nil, st, err
	}
	defer unix.Close(pfd)
	flag &^= unix.O_NOFOLLOW // /proc/self/fd/N is a magic link: O_NOFOLLOW would refuse it; it points at the proven inode
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), flag|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, st, &os.PathError{Op: "reopen", Path: path, Err: err}
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, st, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Dev != pst.Dev || st.Ino != pst.Ino || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, st, fmt.Errorf("open %s: the reopened file is not the one checked (inode %d on %d, want %d on %d)",
			path, st.Ino, st.Dev, pst.Ino, pst.Dev)
	}
	return os.NewFile(uintptr(fd), path), st, nil
}

// provenRegular opens name below dir with O_PATH|O_NOFOLLOW and returns the descriptor only if it is a regular file
// (ErrNotRegular for a symlink, device, FIFO, socket or directory).
func provenRegular(dir *os.File, name, path string) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, st, fmt.Errorf("open %s (symlinks refused): %w", path, err)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, st, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return fd, st, nil
	case unix.S_IFLNK: // O_PATH|O_NOFOLLOW opens the link itself; keep the error callers know for a symlink
		unix.Close(fd)
		return -1, st, fmt.Errorf("open %s (symlinks refused): %w: %w", path, ErrNotRegular, unix.ELOOP)
	default:
		unix.Close(fd)
		return -1, st, fmt.Errorf("open %s: %w (mode %o), never opened", path, ErrNotRegular, st.Mode&unix.S_IFMT)
	}
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
