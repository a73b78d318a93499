package gc

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keeplog/keeplog/internal/loopfs"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// TestPodPlantedSymlinksNeverFollowed: a pod plants victim -> /, x -> /etc, a link to a canary directory outside
// the root, a symlinked subdirectory and a link deep inside a real subdirectory. GC removes the links and its own
// directory, nothing they point at.
func TestPodPlantedSymlinksNeverFollowed(t *testing.T) {
	f := newFixture(t)
	f.cfg.Policy.RetainFor = time.Minute
	outside := t.TempDir()
	canary := filepath.Join(outside, "canary")
	if err := os.MkdirAll(filepath.Join(outside, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{canary, filepath.Join(outside, "sub", "keep")} {
		if err := os.WriteFile(p, []byte("must survive"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.volume("v1:node-a:pvc-1", store.Persistent, "pvc-1", nil)
	dir, target := f.podDir("v1:node-a:pvc-1", 10)
	pd := filepath.Join(f.root, dir)
	if err := os.MkdirAll(filepath.Join(pd, "app", "deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, to := range map[string]string{
		"victim":                 "/",
		"x":                      "/etc",
		"canary-link":            canary,
		"outside-dir":            outside,
		"subdir-link":            filepath.Join(outside, "sub"),
		"app/deep/up":            "../../../..",
		"app/deep/canary":        canary,
		"app/deep/relative-root": "../../../../../../../../..",
	} {
		if err := os.Symlink(to, filepath.Join(pd, link)); err != nil {
			t.Fatal(err)
		}
	}
	f.unpublish("v1:node-a:pvc-1", target)
	f.clk.Step(time.Minute)
	res := f.pass(f.gc())
	if !slices.Equal(deletedDirs(res), []string{dir}) {
		t.Fatalf("deleted %v", res.Deleted)
	}
	f.wantExists(dir, false, "after GC")
	for _, p := range []string{canary, filepath.Join(outside, "sub", "keep"), "/etc/passwd", "/etc/hostname"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s outside the root is gone: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(f.root, api.KeeplogDir, "volumes")); err != nil {
		t.Fatalf("the state directory suffered: %v", err)
	}
	if _, err := os.Stat(f.root); err != nil {
		t.Fatalf("root gone: %v", err)
	}
}

// TestDiskPressureOnLoopExt4 fills a small real ext4 filesystem (a loop device) used as the root past the hard limit
// and checks that new volumes are refused, that a pass deletes the oldest archived directories first until the
// filesystem is below the low watermark, and that pending and published directories stay.
func TestDiskPressureOnLoopExt4(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop device, mkfs.ext4, mount")
	}
	mnt := loopfs.ForTest(t, 64)
	f := newFixture(t)
	f.root = filepath.Join(mnt, "root")
	st, err := store.Open(f.root, f.clk)
	if err != nil {
		t.Fatal(err)
	}
	f.st = st
	f.cfg.HighWatermark, f.cfg.LowWatermark, f.cfg.HardLimit = 90, 60, 95
	f.disk = func() (DiskUsage, error) { return Statfs(f.root) }
	f.volume("v1:node-a:pvc-1", store.Persistent, "pvc-1", map[string]string{api.ParamRetainFor: "1000h"})
	g := f.gc()
	published, _ := f.podDir("v1:node-a:pvc-1", 2<<20)
	var dirs []string // unpublished, oldest first
	for {
		u, err := Statfs(f.root)
		if err != nil {
			t.Fatal(err)
		}
		if u.Percent() >= 95.5 {
			break
		}
		if len(dirs) > 100 {
			t.Fatalf("filesystem does not fill: %+v", u)
		}
		d, target := f.podDir("v1:node-a:pvc-1", 3<<20)
		f.unpublish("v1:node-a:pvc-1", target)
		f.clk.Step(time.Minute)
		dirs = append(dirs, d)
	}
	if len(dirs) < 8 {
		t.Fatalf("only %d directories fill the filesystem", len(dirs))
	}
	pending := []string{dirs[0], dirs[2]} // the two oldest with un-uploaded dumps
	for _, d := range pending {
		f.archive.set(d, true)
	}
	if err := g.AdmitVolume(); err == nil || !strings.Contains(err.Error(), f.root) {
		t.Fatalf("past the hard limit AdmitVolume = %v, want a refusal naming the root", err)
	}
	res := f.pass(g)
	u, err := Statfs(f.root)
	if err != nil {
		t.Fatal(err)
	}
	if u.Percent() >= 60 || res.UsedPercent >= 60 {
		t.Fatalf("after the pass %.1f%% used (pass says %.1f%%), want below the 60%% low watermark", u.Percent(), res.UsedPercent)
	}
	var archivedOldestFirst []string
	for _, d := range dirs {
		if !slices.Contains(pending, d) {
			archivedOldestFirst = append(archivedOldestFirst, d)
		}
	}
	got := deletedDirs(res)
	if len(got) == 0 || len(got) == len(archivedOldestFirst) || !slices.Equal(got, archivedOldestFirst[:len(got)]) {
		t.Fatalf("deleted %v, want a proper prefix of the archived directories oldest first %v", got, archivedOldestFirst)
	}
	for _, d := range append([]string{published}, pending...) {
		f.wantExists(d, true, "published or archive pending")
	}
	for _, d := range archivedOldestFirst[len(got):] {
		f.wantExists(d, true, "newer, not needed to get below the low watermark")
	}
	if err := g.AdmitVolume(); err != nil {
		t.Fatalf("after the pass: %v", err)
	}
	t.Logf("deleted %d of %d directories; %.1f%% used", len(got), len(dirs), u.Percent())
}
