package fstest

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// BindMount bind-mounts src on dst (which must exist) for the test. The cleanup unmounts it wherever it is then:
// the mount is found again in /proc/self/mountinfo, so a rename of a directory above it (the GC moving a pod
// directory into the trash) does not leave it behind. umount -l is the last resort, and a mount that cannot be
// undone fails the test. A test may unmount it itself first (unix.Unmount(dst, 0)).
func BindMount(t testing.TB, src, dst string) {
	t.Helper()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("mount --bind %s %s: %v", src, dst, err)
	}
	m, err := mountOf(dst)
	if err != nil {
		_ = unix.Unmount(dst, unix.MNT_DETACH)
		t.Fatalf("the bind mount on %s: %v", dst, err)
	}
	t.Cleanup(func() {
		if err := m.unmount(); err != nil {
			t.Error(err)
		}
	})
}

// mount identifies one mount in mountinfo: its ID (which the kernel reuses once it is unmounted, possibly for
// another process's mount), its device and the directory of that device it shows (a bind mount's source).
type mount struct {
	id, dev, root string
}

// mountOf returns the mount on which path is (path itself when it is a mount point).
func mountOf(path string) (mount, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err != nil {
		return mount{}, fmt.Errorf("statx %s: %w", path, err)
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return mount{}, fmt.Errorf("statx %s: no mount ID (Linux 5.8 or later needed)", path)
	}
	id := strconv.FormatUint(stx.Mnt_id, 10)
	entries, err := mountinfo()
	if err != nil {
		return mount{}, err
	}
	for _, f := range entries {
		if f[0] == id {
			return mount{id: f[0], dev: f[2], root: f[3]}, nil
		}
	}
	return mount{}, fmt.Errorf("mount %s of %s is not in /proc/self/mountinfo", id, path)
}

// unmount unmounts m wherever it is mounted now (umount -l if a plain umount fails); a mount that is gone already
// is no error.
func (m mount) unmount() error {
	entries, err := mountinfo()
	if err != nil {
		return err
	}
	for _, f := range entries {
		if f[0] != m.id || f[2] != m.dev || f[3] != m.root {
			continue
		}
		mp := UnescapeMountPath(f[4])
		if err := unix.Unmount(mp, 0); err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("umount -l %s: %w", mp, err)
		}
		return nil
	}
	return nil
}

// mountinfo returns the fields of each line of /proc/self/mountinfo with at least five: mount ID, parent ID,
// major:minor, root, mount point, ...
func mountinfo() ([][]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out [][]string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 5 {
			out = append(out, f)
		}
	}
	return out, nil
}

// UnescapeMountPath undoes /proc/self/mountinfo's octal escapes of space, tab, newline and backslash (\040, \011,
// \012, \134) in a mount point or root.
func UnescapeMountPath(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
