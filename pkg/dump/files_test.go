package dump

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/keeplog/keeplog/internal/fstest"
	"github.com/keeplog/keeplog/pkg/policy"
)

// TestDumpFilesStaysInThePodDirectory: the walk that looks for new dumps never follows a symlink the pod planted
// and never enters a mount inside the pod directory (it used filepath.WalkDir, which entered both).
func TestDumpFilesStaysInThePodDirectory(t *testing.T) {
	pod := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "x.hprof"), []byte("not the pod's"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"app/deep/er", "app/mnt", ".keeplog"} {
		if err := os.MkdirAll(filepath.Join(pod, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"app/deep/er/heap.hprof", ".keeplog/own.hprof", "top.hprof"} {
		if err := os.WriteFile(filepath.Join(pod, f), []byte("dump"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(pod, "app", "link")); err != nil {
		t.Fatal(err)
	}
	fstest.BindMount(t, outside, filepath.Join(pod, "app", "mnt"))
	var got []string
	for rel := range dumpFiles(pod, policy.ArchivePolicy{}) {
		got = append(got, rel)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"app/deep/er/heap.hprof"}) {
		t.Fatalf("dump files %v, want only app/deep/er/heap.hprof", got)
	}
}
