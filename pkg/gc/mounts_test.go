package gc

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/fstest"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// An expired pod directory with a bind mount inside is kept and reported once (log and Event) while the pass goes
// on; after the unmount the next pass deletes it.
func TestExpiredDirectoryHoldingAMountIsKeptAndReportedOnce(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount --bind)")
	}
	f := newFixture(t)
	f.cfg.Policy.RetainFor = time.Minute
	f.volume("v1:node-a:pvc-1", store.Persistent, "pvc-1", nil)
	held, target := f.podDir("v1:node-a:pvc-1", 10)
	other, otherTarget := f.podDir("v1:node-a:pvc-1", 10)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("must survive"), 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(f.root, held, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(outside, mnt, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	f.unpublish("v1:node-a:pvc-1", target)
	f.unpublish("v1:node-a:pvc-1", otherTarget)
	f.clk.Step(time.Minute)
	g := f.gc()
	for pass := range 2 {
		res := f.pass(g)
		if !slices.Equal(deletedDirs(res), []string{other}) && pass == 0 {
			t.Fatalf("pass %d deleted %v, want only %s", pass, res.Deleted, other)
		}
		f.wantExists(held, true, "with the mount")
	}
	var held1 []event
	for _, e := range f.events.all() {
		if e.reason == api.ReasonLogDirectoryHoldsMount {
			held1 = append(held1, e)
		}
	}
	if len(held1) != 1 || held1[0].pod != held || held1[0].typ != "Warning" || !strings.Contains(held1[0].msg, mnt) {
		t.Fatalf("events %+v: want one Warning %s naming %s", held1, api.ReasonLogDirectoryHoldsMount, mnt)
	}
	if b, err := os.ReadFile(filepath.Join(outside, "keep")); err != nil || string(b) != "must survive" {
		t.Fatalf("mounted file: %q %v", b, err)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	if res := f.pass(g); !slices.Equal(deletedDirs(res), []string{held}) {
		t.Fatalf("after the unmount deleted %v", res.Deleted)
	}
	f.wantExists(held, false, "after the unmount")
}

// TestDirSizeNeverCountsAnotherMount: what is bind-mounted inside a pod directory is not its own, so the retained
// size (keeplog_gc_retained_bytes) and a dry run's estimate count only the pod directory's mount.
// filepath.WalkDir crossed the mount and counted the 8 MiB behind it.
func TestDirSizeNeverCountsAnotherMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount --bind)")
	}
	pod := filepath.Join(t.TempDir(), "ns_pod_uid")
	if err := os.MkdirAll(filepath.Join(pod, "app", "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeBlocks(t, filepath.Join(pod, "app", "own.log"), 1<<20)
	outside := t.TempDir()
	writeBlocks(t, filepath.Join(outside, "big"), 8<<20)
	before, n := dirSize(pod)
	mnt := filepath.Join(pod, "app", "mnt")
	if err := unix.Mount(outside, mnt, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	got, gotN := dirSize(pod)
	if got != before || gotN != n {
		t.Errorf("with 8 MiB bind-mounted inside: %d bytes in %d entries, want %d in %d (the mount point counted, not what it holds)",
			got, gotN, before, n)
	}
	if before < 1<<20 || n != 4 {
		t.Errorf("without the mount: %d bytes in %d entries, want at least 1 MiB in 4 (the pod directory, app, mnt, own.log)", before, n)
	}
}

// writeBlocks writes size bytes that are allocated (not a sparse file).
func writeBlocks(t *testing.T, p string, size int) {
	t.Helper()
	if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	if f, err := os.Open(p); err == nil {
		_ = f.Sync()
		f.Close()
	}
}

// TestDirSizeCountsAHardLinkOnce: a file linked twice in a pod directory takes its blocks once, and dirSize says what
// du says (the usage tracker counts the same way, and the retained-bytes gauge adds the two).
func TestDirSizeCountsAHardLinkOnce(t *testing.T) {
	pod := filepath.Join(t.TempDir(), "ns_pod_uid")
	if err := os.MkdirAll(filepath.Join(pod, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeBlocks(t, filepath.Join(pod, "app", "gc.log"), 1<<20)
	writeBlocks(t, filepath.Join(pod, "app", "heap.hprof"), 2<<20)
	if err := os.Link(filepath.Join(pod, "app", "heap.hprof"), filepath.Join(pod, "heap.hprof")); err != nil {
		t.Fatal(err)
	}
	want := fstest.DuBytes(t, pod)
	if got, _ := dirSize(pod); got != want {
		t.Fatalf("dirSize %d, du -s -B1 %d (the 2 MiB file linked twice counted twice?)", got, want)
	}
}
