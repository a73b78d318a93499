package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/fstest"
	"github.com/keeplog/keeplog/pkg/api"
)

// mountedOutside makes an outside directory with files (on the same filesystem as the root: same st_dev, only the
// mount ID differs), bind-mounts it on <inside>/logs/mnt, and returns the outside path and every file's sha256.
func mountedOutside(t *testing.T, inside string) (string, map[string]string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount --bind)")
	}
	outside := t.TempDir()
	for _, p := range []string{"a.log", "sub/b.log", "sub/deeper/c.hprof"} {
		full := filepath.Join(outside, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("outside "+p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mnt := filepath.Join(inside, "logs", "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	fstest.BindMount(t, outside, mnt) // unmounted at the end wherever a rename (into the trash) moved it
	return outside, hashFiles(t, outside)
}

func hashFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// An expired pod directory with a bind mount inside: the GC's delete used to rename it into the trash and empty the
// mounted outside directory, and later passes failed with EBUSY.
func TestDeletePodDirKeepsADirectoryThatHoldsAMount(t *testing.T) {
	s, root := openStore(t)
	dir := "ns_pod_" + gcUID
	claimed(t, s, "v1:n:vol", dir)
	outside, before := mountedOutside(t, filepath.Join(root, dir))
	_, pd, err := s.Owner(dir)
	if err != nil {
		t.Fatal(err)
	}
	check := DeleteCheck{Volume: "v1:n:vol", LastPublished: pd.LastPublished}
	mnt := filepath.Join(root, dir, "logs", "mnt")
	_, err = s.DeletePodDir(dir, check)
	if !errors.Is(err, ErrHoldsMount) || !strings.Contains(err.Error(), mnt) {
		t.Fatalf("DeletePodDir = %v; want ErrHoldsMount naming %s", err, mnt)
	}
	if after := hashFiles(t, outside); !maps.Equal(before, after) {
		t.Fatalf("the mounted directory changed: %v, was %v", after, before)
	}
	if _, err := os.Stat(filepath.Join(mnt, "a.log")); err != nil {
		t.Fatalf("the pod directory was not kept where it was: %v", err)
	}
	if _, _, err := s.Owner(dir); err != nil {
		t.Fatalf("the record was not kept: %v", err)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeletePodDir(dir, check); err != nil {
		t.Fatalf("after the unmount: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, dir)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("not deleted after the unmount: %v", err)
	}
	if after := hashFiles(t, outside); !maps.Equal(before, after) {
		t.Fatalf("the outside directory changed: %v", after)
	}
}

// A mount that appears after the check (here: a tree already in the trash) stops the removal; it is never emptied.
func TestEmptyTrashNeverEmptiesAMount(t *testing.T) {
	s, root := openStore(t)
	left := filepath.Join(root, api.KeeplogDir, trashDirName, "ns_pod_"+gcUID+"~1")
	if err := os.MkdirAll(filepath.Join(left, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	outside, before := mountedOutside(t, left)
	for range 2 {
		if err := s.EmptyTrash(); !errors.Is(err, ErrHoldsMount) || !strings.Contains(err.Error(), filepath.Join(left, "logs", "mnt")) {
			t.Fatalf("EmptyTrash = %v; want ErrHoldsMount naming the mount point", err)
		}
		if after := hashFiles(t, outside); !maps.Equal(before, after) {
			t.Fatalf("the mounted directory changed: %v, was %v", after, before)
		}
	}
	if err := unix.Unmount(filepath.Join(left, "logs", "mnt"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.EmptyTrash(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(left); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("trash not emptied after the unmount: %v", err)
	}
}

// removeTree alone (DeletePodDir after its check, DeleteVolume, EmptyTrash) never empties a mount either.
func TestRemoveTreeStopsAtAMount(t *testing.T) {
	_, root := openStore(t)
	dir := filepath.Join(root, "ns_pod_"+gcUID)
	outside, before := mountedOutside(t, dir)
	if err := removeTree(root, dir); !errors.Is(err, ErrHoldsMount) {
		t.Fatalf("removeTree = %v; want ErrHoldsMount", err)
	}
	if after := hashFiles(t, outside); !maps.Equal(before, after) {
		t.Fatalf("the mounted directory changed: %v, was %v", after, before)
	}
}
