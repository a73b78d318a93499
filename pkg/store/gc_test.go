package store

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/keeplog/keeplog/pkg/api"
)

const gcUID = "0f8c6a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f"

func claimed(t *testing.T, s *Store, vol, dir string) {
	t.Helper()
	if _, err := s.CreateVolume(&Volume{ID: vol, Kind: Persistent}); err != nil && !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	if _, err := s.ClaimPodDir(vol, dir, nil); err != nil {
		t.Fatal(err)
	}
}

func TestDeletePodDirChecksRecords(t *testing.T) {
	s, root := openStore(t)
	dir := "ns_pod_" + gcUID
	claimed(t, s, "v1:n:vol", dir)
	if err := os.WriteFile(filepath.Join(root, dir, "app.log"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.AddTarget("v1:n:vol", Target{Path: "/t/1", PodDir: dir}); err != nil {
		t.Fatal(err)
	}
	_, pd, err := s.Owner(dir)
	if err != nil {
		t.Fatal(err)
	}
	check := DeleteCheck{Volume: "v1:n:vol", LastPublished: pd.LastPublished}
	if _, err := s.DeletePodDir(dir, check); !errors.Is(err, ErrInUse) {
		t.Fatalf("published directory: got %v, want ErrInUse", err)
	}
	if _, err := s.DeletePodDir(dir, DeleteCheck{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("owned directory deleted as an orphan: got %v, want ErrConflict", err)
	}
	if err := s.RemoveTarget("v1:n:vol", "/t/1"); err != nil {
		t.Fatal(err)
	}
	// Published again after the decision: refused.
	if err := s.AddTarget("v1:n:vol", Target{Path: "/t/2", PodDir: dir}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveTarget("v1:n:vol", "/t/2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeletePodDir(dir, check); !errors.Is(err, ErrConflict) {
		t.Fatalf("directory published again since the decision: got %v, want ErrConflict", err)
	}
	_, pd, _ = s.Owner(dir)
	path, err := s.DeletePodDir(dir, DeleteCheck{Volume: "v1:n:vol", LastPublished: pd.LastPublished})
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(root, dir) {
		t.Fatalf("path %s", path)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory still there: %v", err)
	}
	if _, _, err := s.Owner(dir); !errors.Is(err, ErrNotFound) {
		t.Fatalf("record still there: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(root, api.KeeplogDir, trashDirName)); len(entries) != 0 {
		t.Fatalf("trash not emptied: %v", entries)
	}
	if _, err := s.GetVolume("v1:n:vol"); err != nil {
		t.Fatalf("the volume's record must stay: %v", err)
	}
}

func TestDeletePodDirOrphanAndOddEntries(t *testing.T) {
	s, root := openStore(t)
	orphan := "ns_gone_" + gcUID
	if err := os.Mkdir(filepath.Join(root, orphan), 0o777); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "ns_link_"+gcUID)); err != nil {
		t.Fatal(err)
	}
	for _, other := range []string{"lost+found", "notes", "a_b"} {
		if err := os.Mkdir(filepath.Join(root, other), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.ListPodDirs()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range list {
		got[e.Name] = e.Real
	}
	if len(got) != 2 || !got[orphan] || got["ns_link_"+gcUID] {
		t.Fatalf("ListPodDirs = %v: want the orphan (real) and the link (not real) only", list)
	}
	if _, err := s.DeletePodDir("ns_link_"+gcUID, DeleteCheck{}); err == nil {
		t.Fatal("a symlink in the root was deleted as a pod directory")
	}
	if _, err := os.Stat(outside); err != nil {
		t.Fatalf("symlink target gone: %v", err)
	}
	for _, bad := range []string{"", ".", "..", ".keeplog", "a/b", "../x"} {
		if _, err := s.DeletePodDir(bad, DeleteCheck{}); err == nil {
			t.Errorf("DeletePodDir(%q) accepted", bad)
		}
	}
	if _, err := s.DeletePodDir(orphan, DeleteCheck{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(root, orphan)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan still there: %v", err)
	}
	// Already gone: fine.
	if _, err := s.DeletePodDir(orphan, DeleteCheck{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "lost+found")); err != nil {
		t.Fatal(err)
	}
}

func TestEmptyTrash(t *testing.T) {
	s, root := openStore(t)
	trash := filepath.Join(root, api.KeeplogDir, trashDirName)
	left := filepath.Join(trash, "ns_pod_"+gcUID+"~1")
	if err := os.MkdirAll(filepath.Join(left, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	canary := filepath.Join(outside, "canary")
	if err := os.WriteFile(canary, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(left, "app", "out")); err != nil {
		t.Fatal(err)
	}
	if err := s.EmptyTrash(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(trash); len(entries) != 0 {
		t.Fatalf("trash not emptied: %v", entries)
	}
	if _, err := os.Stat(canary); err != nil {
		t.Fatalf("emptying the trash followed a symlink: %v", err)
	}
}

func TestIsPodDirName(t *testing.T) {
	for name, want := range map[string]bool{
		"ns_pod_" + gcUID:                true,
		FallbackDirName("v1:node:pvc-1"): true,
		"_volume_":                       false,
		"_volume_a/b":                    false,
		"lost+found":                     false,
		".keeplog":                       false,
		"ns_pod":                         false,
	} {
		if got := IsPodDirName(name); got != want {
			t.Errorf("IsPodDirName(%q) = %v, want %v", name, got, want)
		}
	}
}
