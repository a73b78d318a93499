package safefs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// ErrOtherMount marks a directory that is on another mount than the tree being walked or removed (a bind mount, a
// filesystem mounted inside a pod directory). keeplog never descends into one: what is mounted there belongs to
// someone else, and emptying it would delete files outside the pod directory.
var ErrOtherMount = errors.New("on another mount")

// MountID tells which mount an inode is reached through. st_dev alone is not enough: a bind mount of a directory of
// the same filesystem has the same st_dev but its own mount ID (statx STATX_MNT_ID, Linux 5.8).
type MountID struct {
	Dev uint64
	Mnt uint64
}

// MountOf is the mount of an open file or directory (also an O_PATH descriptor).
func MountOf(f *os.File) (MountID, error) {
	return statxMount(int(f.Fd()), "", unix.AT_EMPTY_PATH, f.Name())
}

// MountAt is the mount of name below dir, not following a symlink. A directory that is a mount point reports the
// mount on it (path lookup always enters a mount).
func MountAt(dir *os.File, name string) (MountID, error) {
	if err := CheckName(name); err != nil {
		return MountID{}, err
	}
	return statxMount(int(dir.Fd()), name, unix.AT_SYMLINK_NOFOLLOW, filepath.Join(dir.Name(), name))
}

func statxMount(fd int, name string, flags int, path string) (MountID, error) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, name, flags|unix.AT_STATX_DONT_SYNC, unix.STATX_MNT_ID|unix.STATX_INO, &stx); err != nil {
		return MountID{}, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return MountID{}, fmt.Errorf("statx %s: the kernel reports no mount ID (Linux 5.8 or later is required)", path)
	}
	return MountID{Dev: unix.Mkdev(stx.Dev_major, stx.Dev_minor), Mnt: stx.Mnt_id}, nil
}

// SameMount reports whether the open files a and b are on the same mount (same st_dev and mount ID). A walker that
// opened a child directory compares it with its parent before it reads it.
func SameMount(a, b *os.File) (bool, error) {
	ma, err := MountOf(a)
	if err != nil {
		return false, err
	}
	mb, err := MountOf(b)
	if err != nil {
		return false, err
	}
	return ma == mb, nil
}

// OpenSubdirAt opens name below dir as a directory (OpenDirAt: never through a symlink) and only when it is on
// dir's mount; a directory on another mount is closed again unread and refused with ErrOtherMount. The check is on
// the opened descriptor, so a mount that appears between a listing and the open is still seen.
func OpenSubdirAt(dir *os.File, name string) (*os.File, error) {
	want, err := MountOf(dir)
	if err != nil {
		return nil, err
	}
	return openSubdirOn(dir, name, want)
}

// openSubdirOn is OpenSubdirAt with the mount the caller already knows.
func openSubdirOn(dir *os.File, name string, want MountID) (*os.File, error) {
	sub, err := OpenDirAt(dir, name, false)
	if err != nil {
		return nil, err
	}
	got, err := MountOf(sub)
	if err != nil {
		sub.Close()
		return nil, err
	}
	if got != want {
		sub.Close()
		return nil, fmt.Errorf("directory %s: %w (mount %d, device %d; its parent is on mount %d, device %d)",
			sub.Name(), ErrOtherMount, got.Mnt, got.Dev, want.Mnt, want.Dev)
	}
	return sub, nil
}

// MountsBelow lists the mount points at or below the open directory dir (its path as the kernel resolves it, so it
// matches /proc/self/mountinfo), sorted. Walks and removals refuse such a tree up front; OpenSubdirAt still guards
// against a mount that appears later.
func MountsBelow(dir *os.File) ([]string, error) {
	path, err := ResolvedPath(dir)
	if err != nil {
		return nil, err
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(path))
	if err != nil {
		return nil, fmt.Errorf("read the mount table to look for mounts below %s: %w", path, err)
	}
	out := make([]string, 0, len(mounts))
	for _, m := range mounts {
		out = append(out, m.Mountpoint)
	}
	sort.Strings(out)
	return out, nil
}
