package store

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/keeplog/keeplog/pkg/api"
)

// podLogsEntry makes <root>/.pods/<dir>/app/0.log, a hard link of a file in the pod directory as pkg/podinfo makes
// it, and returns the entry's path.
func podLogsEntry(t *testing.T, root, dir string) string {
	t.Helper()
	entry := filepath.Join(root, api.PodLogsDir, dir)
	if err := os.MkdirAll(filepath.Join(entry, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(root, dir, "0.log")
	if err := os.WriteFile(src, []byte("line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(src, filepath.Join(entry, "app", "0.log")); err != nil {
		t.Fatal(err)
	}
	return entry
}

func TestDeletePodDirRemovesItsPodLogsEntry(t *testing.T) {
	s, root := openStore(t)
	dir, other := "ns_pod_"+gcUID, "ns_other_"+gcUID
	claimed(t, s, "v1:n:vol", dir)
	claimed(t, s, "v1:n:other", other)
	entry := podLogsEntry(t, root, dir)
	otherEntry := podLogsEntry(t, root, other)
	_, pd, err := s.Owner(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeletePodDir(dir, DeleteCheck{Volume: "v1:n:vol", LastPublished: pd.LastPublished}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(entry); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s survived the deletion of its pod directory: %v", entry, err)
	}
	if _, err := os.Stat(filepath.Join(otherEntry, "app", "0.log")); err != nil {
		t.Fatalf("another pod's entry went too: %v", err)
	}
	trash, _ := os.ReadDir(filepath.Join(root, api.KeeplogDir, trashDirName))
	if len(trash) != 0 {
		t.Fatalf("trash not emptied: %v", trash)
	}
}

func TestDeletePodDirRefusalKeepsPodLogsEntry(t *testing.T) {
	s, root := openStore(t)
	dir := "ns_pod_" + gcUID
	claimed(t, s, "v1:n:vol", dir)
	entry := podLogsEntry(t, root, dir)
	if err := s.AddTarget("v1:n:vol", Target{Path: "/t/1", PodDir: dir}); err != nil {
		t.Fatal(err)
	}
	_, pd, _ := s.Owner(dir)
	if _, err := s.DeletePodDir(dir, DeleteCheck{Volume: "v1:n:vol", LastPublished: pd.LastPublished}); !errors.Is(err, ErrInUse) {
		t.Fatalf("published: got %v, want ErrInUse", err)
	}
	if _, err := os.Stat(filepath.Join(entry, "app", "0.log")); err != nil {
		t.Fatalf("a refused delete removed the .pods entry: %v", err)
	}
}

func TestDeletePodDirLeavesSymlinkTargetOfPodLogsEntry(t *testing.T) {
	s, root := openStore(t)
	dir := "ns_gone_" + gcUID
	if err := os.Mkdir(filepath.Join(root, dir), 0o777); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	keep := filepath.Join(outside, "keep")
	if err := os.WriteFile(keep, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, api.PodLogsDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, api.PodLogsDir, dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeletePodDir(dir, DeleteCheck{}); err == nil {
		t.Fatal("a symlinked .pods entry was accepted")
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("symlink target touched: %v", err)
	}
}

func TestDeleteVolumeRemovesPodLogsEntries(t *testing.T) {
	s, root := openStore(t)
	dir := "ns_pod_" + gcUID
	claimed(t, s, "v1:n:vol", dir)
	entry := podLogsEntry(t, root, dir)
	if err := s.DeleteVolume("v1:n:vol"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(entry); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s survived DeleteVolume: %v", entry, err)
	}
}

func TestListPodDirsIgnoresPodLogsTree(t *testing.T) {
	s, root := openStore(t)
	dir := "ns_pod_" + gcUID
	claimed(t, s, "v1:n:vol", dir)
	podLogsEntry(t, root, dir)
	list, err := s.ListPodDirs()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != dir {
		t.Fatalf("ListPodDirs = %v, want only %s", list, dir)
	}
	if _, err := s.PodDirPath(api.PodLogsDir); err == nil {
		t.Fatalf("%s accepted as a pod directory name", api.PodLogsDir)
	}
	for _, bad := range []string{"", "..", ".keeplog", "a/b"} {
		if _, err := s.PodLogsPath(bad); err == nil {
			t.Errorf("PodLogsPath(%q) accepted", bad)
		}
	}
}

func TestDeleteOrphanPodLogs(t *testing.T) {
	s, root := openStore(t)
	owned, orphan := "ns_pod_"+gcUID, "ns_gone_"+gcUID
	claimed(t, s, "v1:n:vol", owned)
	podLogsEntry(t, root, owned)
	entry := filepath.Join(root, api.PodLogsDir, orphan, "app")
	if err := os.MkdirAll(entry, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(entry, "0.log"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, api.PodLogsDir, "not-a-pod"), 0o755); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListPodLogs()
	if err != nil || len(list) != 2 {
		t.Fatalf("ListPodLogs = %v, %v: want the two pod entries", list, err)
	}
	if err := s.DeleteOrphanPodLogs(owned); !errors.Is(err, ErrConflict) {
		t.Fatalf("entry of an existing pod directory: got %v, want ErrConflict", err)
	}
	if err := s.DeleteOrphanPodLogs(orphan); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(root, api.PodLogsDir, orphan)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan entry still there: %v", err)
	}
	if err := s.DeleteOrphanPodLogs(orphan); err != nil {
		t.Fatalf("already gone: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, api.PodLogsDir, owned, "app", "0.log")); err != nil {
		t.Fatal(err)
	}
}
