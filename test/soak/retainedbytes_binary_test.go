//go:build soak

package soak

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keeplog/keeplog/internal/fstest"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/test/binary"
)

// retainedBytesTimeout bounds each wait for the gauge: a GC pass every second, and each retained directory walked
// by the usage tracker once in 60 periodic walks (6 s at --usage-walk-interval=100ms); slack for a loaded machine
// and for a first GC pass that leaves the gauge at 0 while the tracker's first walk runs.
const retainedBytesTimeout = 40 * time.Second

// TestBinaryRetainedBytes is keeplog_gc_retained_bytes through the shipped binary: three pods publish, write files
// of known sizes (one a hard link, counted once) and unpublish, so their directories are retained (--retain-for=1h);
// the gauge must equal the sum of `du -s -B1` of each directory, exactly: the usage tracker counts as du does
// (st_blocks×512, each inode once, directories too, keeplog's own .keeplog files included, as the walks count them).
// Then one file grows by 3 MiB, written straight into the retained directory as a process that outlived the mount
// would: the gauge must follow within a few GC passes, which it cannot if the collector measured the directories
// itself (it does that at most every 30 to 60 minutes per directory).
func TestBinaryRetainedBytes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("must run as root (keeplog bind-mounts)")
	}
	ctx := context.Background()
	e := &archEnv{t: t, work: t.TempDir()} // no archive target: archiving is off, the directories stay
	e.start(ctx, "", []string{"--retain-for=1h", "--gc-interval=1s", "--usage-walk-interval=100ms", "--usage-update-interval=100ms"})
	kl, c, work := e.kl, e.csi, e.work

	sizes := [][]int64{{1 << 20, 300 << 10, 10}, {2<<20 + 7}, {512 << 10, 64 << 10}}
	var dirs []string
	for i, files := range sizes {
		pod := binary.NewPod("retained", fmt.Sprintf("bytes-%d", i))
		vol := binary.EphemeralVolumeID(pod, "logs")
		target := filepath.Join(work, "targets", pod.UID, "mount")
		if err := c.Publish(ctx, vol, target, pod, true, nil); err != nil {
			t.Fatal(err)
		}
		var written int64
		for j, size := range files {
			if _, err := binary.WriteFile(filepath.Join(target, "app", fmt.Sprintf("file%d.log", j)), size, uint64(10*i+j)); err != nil {
				t.Fatal(err)
			}
			written += size
		}
		if i == 0 { // a second name for the same inode: du and the tracker count it once
			if err := os.Link(filepath.Join(target, "app", "file0.log"), filepath.Join(target, "app", "linked.log")); err != nil {
				t.Fatal(err)
			}
		}
		if err := binary.Retry(ctx, time.Minute, func(ctx context.Context) error { return c.Unpublish(ctx, vol, target) }); err != nil {
			t.Fatal(err)
		}
		dir := kl.PodDir(pod)
		if du := fstest.DuBytes(t, dir); du < written {
			t.Fatalf("du -s -B1 %s: %d bytes, less than the %d written", dir, du, written)
		}
		dirs = append(dirs, dir)
	}

	want := waitRetainedBytes(t, ctx, kl, dirs)
	t.Logf("%s %d = du -s -B1 of %d retained directories", api.MetricGCRetainedBytes, want, len(dirs))

	grown := filepath.Join(dirs[1], "app", "file0.log")
	f, err := os.OpenFile(grown, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write(make([]byte, 3<<20))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	after := waitRetainedBytes(t, ctx, kl, dirs)
	t.Logf("after %s grew by 3 MiB: %s %d (+%d) within %s", filepath.Base(grown), api.MetricGCRetainedBytes, after,
		after-want, time.Since(start).Round(100*time.Millisecond))
	if after-want < 3<<20 {
		t.Errorf("the gauge grew by %d bytes, want at least the 3 MiB appended", after-want)
	}
}

// waitRetainedBytes polls /metrics until keeplog_gc_retained_bytes equals the sum of du -s -B1 of dirs (measured
// afresh at each poll) and keeplog_gc_retained_directories their number, and returns the sum.
func waitRetainedBytes(t *testing.T, ctx context.Context, kl *binary.Keeplog, dirs []string) int64 {
	t.Helper()
	deadline := time.Now().Add(retainedBytesTimeout)
	for {
		var du int64
		for _, d := range dirs {
			du += fstest.DuBytes(t, d)
		}
		m, err := binary.Scrape(ctx, kl.HTTPAddr)
		if err != nil {
			t.Fatal(err)
		}
		got, n := m[api.MetricGCRetainedBytes], m[api.MetricGCRetainedDirectories]
		if got == float64(du) && n == float64(len(dirs)) {
			return du
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %v and %s %v after %s, want %d (du -s -B1) and %d; keeplog's log:\n%s",
				api.MetricGCRetainedBytes, got, api.MetricGCRetainedDirectories, n, retainedBytesTimeout, du, len(dirs),
				kl.LogTail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
