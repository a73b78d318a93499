package fstest

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func mntID(t *testing.T, path string) uint64 {
	t.Helper()
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err != nil {
		t.Fatal(err)
	}
	return stx.Mnt_id
}

// The cleanup finds the mount where a rename of a directory above it moved it, as the GC's rename into the trash
// does, and unmounts it there.
func TestBindMountIsUndoneWhereARenameMovedIt(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount --bind)")
	}
	base := t.TempDir()
	src, mnt := filepath.Join(base, "src"), filepath.Join(base, "pod", "mnt")
	for _, d := range []string{src, mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(base, "trash~0", "mnt")
	t.Run("mounted", func(t *testing.T) {
		BindMount(t, src, mnt)
		if mntID(t, mnt) == mntID(t, base) {
			t.Fatal("not mounted")
		}
		if err := os.Rename(filepath.Join(base, "pod"), filepath.Dir(moved)); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(moved, "f")); err != nil {
			t.Fatalf("the mount did not move with the rename: %v", err)
		}
	})
	if mntID(t, moved) != mntID(t, base) {
		t.Fatalf("%s is still a mount point after the cleanup", moved)
	}
	if _, err := os.Stat(filepath.Join(src, "f")); err != nil {
		t.Fatalf("the source lost its file: %v", err)
	}
}

// A test that unmounted its mount itself leaves the cleanup nothing to do (and no error).
func TestBindMountUnmountedByTheTest(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount --bind)")
	}
	base := t.TempDir()
	mnt := filepath.Join(base, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	ok := t.Run("mounted", func(t *testing.T) {
		BindMount(t, t.TempDir(), mnt)
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Fatal(err)
		}
	})
	if !ok {
		t.Fatal("the cleanup of an unmounted mount failed the test")
	}
}

func TestOpenedSeesOpensOnly(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w := OpenWatch(t, p)
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	if Opened(t, w) {
		t.Fatal("a stat was reported as an open")
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if !Opened(t, w) {
		t.Fatal("an open was not seen")
	}
	if Opened(t, w) {
		t.Fatal("the open was reported twice")
	}
}

func TestTrashChurnMovesEveryDirectoryThroughTheTrash(t *testing.T) {
	root := t.TempDir()
	trash := filepath.Join(root, "trash")
	var made []string
	n := TrashChurn(t, trash, 200*time.Millisecond, func(i int) (string, error) {
		d := filepath.Join(root, "pod"+strconv.Itoa(i))
		made = append(made, d)
		return d, os.MkdirAll(filepath.Join(d, "sub", "deeper"), 0o755)
	})
	if n == 0 || n != len(made) {
		t.Fatalf("%d directories churned, %d made", n, len(made))
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "trash" {
		t.Fatalf("left in the root: %v", entries)
	}
	if left, _ := os.ReadDir(trash); len(left) != 0 {
		t.Fatalf("left in the trash: %v", left)
	}
}

func TestUnescapeMountPath(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/t\011x\012y\134z`: "/t\tx\ny\\z", `/plain`: "/plain", `/end\04`: `/end\04`} {
		if got := UnescapeMountPath(in); got != want {
			t.Errorf("UnescapeMountPath(%q) = %q, want %q", in, got, want)
		}
	}
}
