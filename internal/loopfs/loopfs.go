// Package loopfs makes small ext4 filesystems on loop devices for tests that need a real, separate filesystem
// (disk pressure, immutable attributes, a small root). It needs root, truncate, mkfs.ext4 and mount.
package loopfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FS is one mounted loop filesystem.
type FS struct {
	// Dir is the mount point.
	Dir  string
	base string
}

// New makes an ext4 filesystem of sizeMiB in a file under the temp directory and mounts it with -o loop. mkfsArgs
// go to mkfs.ext4 (e.g. "-N", "2048": few inodes, to fill them).
func New(sizeMiB int, mkfsArgs ...string) (*FS, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("loopfs: mounting a loop device needs root (euid %d)", os.Geteuid())
	}
	base, err := os.MkdirTemp("", "keeplog-loopfs-")
	if err != nil {
		return nil, err
	}
	f := &FS{Dir: filepath.Join(base, "mnt"), base: base}
	img := filepath.Join(base, "fs.img")
	if err := os.Mkdir(f.Dir, 0o755); err != nil {
		return nil, errors.Join(err, os.RemoveAll(base))
	}
	for _, cmd := range [][]string{
		{"truncate", "-s", strconv.Itoa(sizeMiB) + "M", img},
		append(append([]string{"mkfs.ext4", "-q", "-F"}, mkfsArgs...), img),
		{"mount", "-o", "loop", img, f.Dir},
	} {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			return nil, errors.Join(fmt.Errorf("loopfs: %s: %v: %s", strings.Join(cmd, " "), err, out), os.RemoveAll(base))
		}
	}
	return f, nil
}

// Remove clears immutable attributes left behind (they would block the removal), unmounts (which frees the loop
// device mount -o loop set up) and deletes the file.
func (f *FS) Remove() error {
	_ = exec.Command("chattr", "-R", "-f", "-i", f.Dir).Run()
	if out, err := exec.Command("umount", f.Dir).CombinedOutput(); err != nil {
		return fmt.Errorf("loopfs: umount %s: %v: %s", f.Dir, err, out)
	}
	return os.RemoveAll(f.base)
}

// ForTest mounts a filesystem for the test and removes it when the test ends; it fails the test (never skips)
// when that is impossible.
func ForTest(t testing.TB, sizeMiB int, mkfsArgs ...string) string {
	t.Helper()
	f, err := New(sizeMiB, mkfsArgs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Remove(); err != nil {
			t.Error(err)
		}
	})
	return f.Dir
}
