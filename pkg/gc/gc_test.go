package gc

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

const week = 7 * 24 * time.Hour

func TestPublishedNeverDeleted(t *testing.T) {
	f := newFixture(t)
	f.volume("v1:node-a:pvc-1", store.Persistent, "pvc-1", map[string]string{api.ParamRetainFor: "1m"})
	dir, _ := f.podDir("v1:node-a:pvc-1", 10)
	f.disk = func() (DiskUsage, error) { return DiskUsage{Size: 100, Used: 99, Avail: 1}, nil } // and under pressure
	f.cfg.DeleteUnarchived = true
	g := f.gc()
	for range 3 {
		f.clk.Step(365 * 24 * time.Hour)
		res := f.pass(g)
		if len(res.Deleted) != 0 {
			t.Fatalf("deleted %v while published", res.Deleted)
		}
	}
	f.wantExists(dir, true, "published a year, disk full")
}

func TestRetentionClockStartsAtUnpublish(t *testing.T) {
	f := newFixture(t)
	f.volume("v1:node-a:pvc-1", store.Persistent, "pvc-1", nil)
	dir, target := f.podDir("v1:node-a:pvc-1", 10)
	g := f.gc()
	f.clk.Step(30 * 24 * time.Hour) // a long-running pod: its retention has not started
	f.pass(g)
	f.unpublish("v1:node-a:pvc-1", target)
	f.clk.Step(week - time.Second)
	if res := f.pass(g); len(res.Deleted) != 0 || res.Retained != 1 {
		t.Fatalf("one second before the default retention of 7 days: %+v", res)
	}
	f.wantExists(dir, true, "before retention")
	f.clk.Step(time.Second)
	res := f.pass(g)
	if !slices.Equal(deletedDirs(res), []string{dir}) || res.Deleted[0].Cause != CauseRetention {
		t.Fatalf("at the end of the retention: %+v", res)
	}
	f.wantExists(dir, false, "after retention")
	if _, _, err := f.st.Owner(dir); err == nil {
		t.Fatal("the directory's record is still there")
	}
	ev := f.events.all()
	if len(ev) != 1 || ev[0].pod != dir || ev[0].reason != api.ReasonLogDirectoryDeleted || ev[0].typ != "Normal" ||
		!strings.Contains(ev[0].msg, "retention 168h0m0s expired") {
		t.Fatalf("events %+v", ev)
	}
	if got := counter(g.metrics.deletions.WithLabelValues(CauseRetention)); got != 1 {
		t.Fatalf("keeplog_gc_deletions_total{reason=retention} = %v", got)
	}
}

func TestRetentionFromParameterAnnotationLiveAndCap(t *testing.T) {
	f := newFixture(t)
	f.cfg.Policy.MaxRetainFor = 48 * time.Hour
	f.volume("v1:node-a:sc", store.Persistent, "sc", map[string]string{api.ParamRetainFor: "2h"})
	bySC, t1 := f.podDir("v1:node-a:sc", 10)
	byAnn, t2 := f.podDir("v1:node-a:sc", 10)
	capped, t3 := f.podDir("v1:node-a:sc", 10)
	byLive, t4 := f.podDir("v1:node-a:sc", 10)
	for dir, v := range map[string]string{byAnn: "30m", capped: "1000h", byLive: "10h"} {
		if err := f.st.SetPodAnnotations("v1:node-a:sc", dir, map[string]string{api.AnnotationRetainFor: v}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tg := range []string{t1, t2, t3, t4} {
		f.unpublish("v1:node-a:sc", tg)
	}
	liveRef, _ := store.ParsePodDirName(byLive)
	g, err := New(f.cfg, Deps{Store: f.st, Clock: f.clk, Statfs: func(string) (DiskUsage, error) { return f.disk() },
		Live: func(ref store.PodRef) (map[string]string, bool) {
			if ref == liveRef {
				return map[string]string{api.AnnotationRetainFor: "1h"}, true // the live pod says 1h, not the recorded 10h
			}
			return nil, false
		}})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		at   time.Duration
		gone []string
	}{
		{29 * time.Minute, nil},
		{30 * time.Minute, []string{byAnn}},
		{time.Hour, []string{byLive}},
		{2*time.Hour - time.Second, nil},
		{2 * time.Hour, []string{bySC}},
		{48*time.Hour - time.Second, nil},
		{48 * time.Hour, []string{capped}},
	}
	for _, s := range steps {
		f.clk.SetTime(t0.Add(s.at))
		res := f.pass(g)
		if got := deletedDirs(res); !slices.Equal(got, s.gone) {
			t.Fatalf("at +%s deleted %v, want %v", s.at, got, s.gone)
		}
	}
}

func TestArchivePendingKeepsDirectory(t *testing.T) {
	f := newFixture(t)
	f.volume("v1:node-a:on", store.Persistent, "on", map[string]string{api.ParamRetainFor: "1h"})
	f.volume("v1:node-a:off", store.Persistent, "off", map[string]string{api.ParamRetainFor: "1h", api.ParamArchive: "false"})
	kept, t1 := f.podDir("v1:node-a:on", 10)
	off, t2 := f.podDir("v1:node-a:off", 10)
	f.unpublish("v1:node-a:on", t1)
	f.unpublish("v1:node-a:off", t2)
	f.archive.set(kept, true)
	f.archive.set(off, true) // archiving is off for it: what the archiver says does not matter
	g := f.gc()
	f.clk.Step(10 * time.Hour)
	if res := f.pass(g); !slices.Equal(deletedDirs(res), []string{off}) {
		t.Fatalf("deleted %v, want only %s (archiving off)", res.Deleted, off)
	}
	f.wantExists(kept, true, "archive pending")
	f.clk.Step(100 * time.Hour)
	f.pass(g)
	f.wantExists(kept, true, "archive still pending")
	f.archive.set(kept, false)
	if res := f.pass(g); !slices.Equal(deletedDirs(res), []string{kept}) {
		t.Fatalf("after the upload: deleted %v, want %s", res.Deleted, kept)
	}
}

func TestOrphanDirectoriesFollowRetentionByMtime(t *testing.T) {
	f := newFixture(t)
	f.cfg.Policy.RetainFor = time.Hour
	orphan := "ns_gone_00000000-0000-0000-0000-00000000000a"
	fallback := store.FallbackDirName("v1:node-a:old")
	for _, d := range []string{orphan, fallback, "lost+found", "admin-notes"} {
		if err := os.MkdirAll(filepath.Join(f.root, d, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(filepath.Join(f.root, d), t0, t0); err != nil {
			t.Fatal(err)
		}
	}
	// A symlink named like a pod directory is not a directory keeplog made: left alone.
	link := "ns_link_00000000-0000-0000-0000-00000000000b"
	if err := os.Symlink(t.TempDir(), filepath.Join(f.root, link)); err != nil {
		t.Fatal(err)
	}
	f.archive.set(fallback, true)
	g := f.gc()
	f.clk.SetTime(t0.Add(time.Hour - time.Second))
	if res := f.pass(g); len(res.Deleted) != 0 || res.Retained != 2 {
		t.Fatalf("before an hour: %+v", res)
	}
	f.clk.SetTime(t0.Add(time.Hour))
	if res := f.pass(g); !slices.Equal(deletedDirs(res), []string{orphan}) {
		t.Fatalf("after an hour: deleted %v, want %s (the fallback is archive-pending)", res.Deleted, orphan)
	}
	for _, d := range []string{fallback, "lost+found", "admin-notes", link} {
		f.wantExists(d, true, "not an expired, archived pod directory")
	}
}

func TestDryRunDeletesNothing(t *testing.T) {
	f := newFixture(t)
	f.cfg.DryRun = true
	f.cfg.Policy.RetainFor = time.Hour
	f.volume("csi-abc", store.Ephemeral, "", nil)
	dir, target := f.podDir("csi-abc", 10)
	f.unpublish("csi-abc", target)
	f.clk.Step(2 * time.Hour)
	g := f.gc()
	res := f.pass(g)
	if !slices.Equal(deletedDirs(res), []string{dir}) || len(res.Volumes) != 0 {
		t.Fatalf("dry run reports %+v, want %s as would-be deleted and no volume", res, dir)
	}
	f.wantExists(dir, true, "dry run")
	if _, err := f.st.GetVolume("csi-abc"); err != nil {
		t.Fatalf("dry run deleted the volume record: %v", err)
	}
	if len(f.events.all()) != 0 || counter(g.metrics.deletions.WithLabelValues(CauseRetention)) != 0 {
		t.Fatal("dry run sent events or counted deletions")
	}
}

func TestInlineVolumeRecordGoesWithItsDirectory(t *testing.T) {
	f := newFixture(t)
	f.cfg.Policy.RetainFor = time.Minute
	f.volume("csi-inline", store.Ephemeral, "", nil)
	f.volume("csi-fresh", store.Ephemeral, "", nil) // just created, about to claim its directory
	dir, target := f.podDir("csi-inline", 10)
	f.unpublish("csi-inline", target)
	f.clk.Step(time.Minute)
	res := f.pass(f.gc())
	if !slices.Equal(deletedDirs(res), []string{dir}) || !slices.Equal(res.Volumes, []string{"csi-inline"}) {
		t.Fatalf("%+v: want %s and the record of csi-inline deleted", res, dir)
	}
	if _, err := f.st.GetVolume("csi-fresh"); err != nil {
		t.Fatalf("a fresh inline volume without a directory yet lost its record: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t)
	f.volume("v1:node-a:pvc-1", store.Persistent, "pvc-1", nil)
	a, ta := f.podDir("v1:node-a:pvc-1", 64<<10)
	_, _ = f.podDir("v1:node-a:pvc-1", 64<<10) // published: not retained
	f.unpublish("v1:node-a:pvc-1", ta)
	f.clk.Step(time.Hour)
	f.disk = func() (DiskUsage, error) { return DiskUsage{Size: 1000, Used: 250, Avail: 750}, nil }
	g := f.gc()
	f.pass(g)
	size, _ := dirSize(filepath.Join(f.root, a))
	if size < 64<<10 {
		t.Fatalf("dirSize %d", size)
	}
	for name, want := range map[string]float64{
		"keeplog_gc_retained_directories":    1,
		"keeplog_gc_retained_bytes":          float64(size),
		"keeplog_gc_oldest_retained_seconds": 3600,
		"keeplog_gc_disk_used_ratio":         0.25,
	} {
		got := gather(t, f, name)
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func gather(t *testing.T, f *fixture, name string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestConfigValidate(t *testing.T) {
	good := newFixture(t).cfg
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"low above high":  func(c *Config) { c.LowWatermark = 95 },
		"high above hard": func(c *Config) { c.HighWatermark = 96; c.HardLimit = 95 },
		"zero interval":   func(c *Config) { c.Interval = 0 },
		"hard over 100":   func(c *Config) { c.HardLimit = 101 },
		"zero grace":      func(c *Config) { c.OrphanGrace = 0 },
	} {
		c := good
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, c)
		}
	}
}

// counter reads a counter's value.
func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestRetainedSizesAreMeasuredRarely: a retained directory's size is measured when it is first seen and then again
// only after 30 to 60 minutes (its own point in that window), not at every pass nor every 10 minutes: measuring
// 10,000 retained directories walks every file they hold. Bytes written meanwhile show after the next measurement.
func TestRetainedSizesAreMeasuredRarely(t *testing.T) {
	f := newRetentionFixture(t)
	dir := f.retainedDir("1")
	g := f.gc()
	f.pass(g)
	first := gather(t, f, "keeplog_gc_retained_bytes")
	start := f.clk.Now()
	if err := os.WriteFile(filepath.Join(f.root, dir, "more.bin"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 29 { // a pass a minute for 29 minutes, then 11 more, past the old 10-minute cache
		f.clk.Step(time.Minute)
		f.pass(g)
		if got := gather(t, f, "keeplog_gc_retained_bytes"); got != first {
			t.Fatalf("retained bytes measured again after %v: %v, want the first measurement %v", f.clk.Since(start), got, first)
		}
	}
	f.clk.Step(31 * time.Minute)
	f.pass(g)
	if got := gather(t, f, "keeplog_gc_retained_bytes"); got < first+1<<20 {
		t.Fatalf("retained bytes after an hour: %v, want the 1 MiB written since (%v + 1 MiB)", got, first)
	}
}

// trackedSizes is Deps.Sizes as the usage tracker gives it: a figure for the directories it knows; none at all
// while walking is set (its first walk runs).
type trackedSizes struct {
	bytes   map[string]int64
	walking bool
}

func (s *trackedSizes) SumDirBytes(names []string) (sum int64, unknown []string, ready bool) {
	if s.walking {
		return 0, nil, false
	}
	for _, name := range names {
		if b, ok := s.bytes[name]; ok {
			sum += b
		} else {
			unknown = append(unknown, name)
		}
	}
	return sum, unknown, true
}

// TestRetainedSizesComeFromTheTracker: with Deps.Sizes, a retained directory the tracker knows is never measured by
// the collector (10,000 retained directories were walked twice: by the tracker and by the collector), the gauge shows
// the tracker's figure at every pass, and a directory the tracker does not know is measured as before.
func TestRetainedSizesComeFromTheTracker(t *testing.T) {
	f := newRetentionFixture(t)
	dir1, dir2 := f.retainedDir("1"), f.retainedDir("2")
	tracked := &trackedSizes{bytes: map[string]int64{dir1: 7 << 20}}
	f.sizes = tracked
	g := f.gc()
	f.pass(g)
	measured, _ := dirSize(filepath.Join(f.root, dir2))
	if got, want := gather(t, f, "keeplog_gc_retained_bytes"), float64(7<<20+measured); got != want {
		t.Fatalf("retained bytes %v, want the tracker's %d for %s plus %d measured for %s", got, 7<<20, dir1, measured, dir2)
	}
	g.mu.Lock()
	_, own1 := g.sizes[dir1]
	_, own2 := g.sizes[dir2]
	g.mu.Unlock()
	if own1 || !own2 {
		t.Fatalf("the collector measured %s: %v (want false: the tracker has it), %s: %v (want true)", dir1, own1, dir2, own2)
	}
	tracked.bytes[dir1] = 9 << 20 // the tracker saw writes: the next pass shows them, no 30-minute wait
	f.clk.Step(time.Minute)
	f.pass(g)
	if got, want := gather(t, f, "keeplog_gc_retained_bytes"), float64(9<<20+measured); got != want {
		t.Fatalf("retained bytes after the tracker's figure changed: %v, want %v", got, want)
	}
}

// TestRetainedBytesWaitForTheTrackersFirstWalk: while the usage tracker's first walk runs (Deps.Sizes not ready) the
// collector measures no retained directory itself (at 20,000 directories that was a second walk of the whole root
// beside the tracker's, 2 of 10 cpu-s at the start) and leaves the gauge as it was; the next pass after the walk shows
// the tracker's figures.
func TestRetainedBytesWaitForTheTrackersFirstWalk(t *testing.T) {
	f := newRetentionFixture(t)
	dir := f.retainedDir("1")
	tracked := &trackedSizes{bytes: map[string]int64{dir: 5 << 20}, walking: true}
	f.sizes = tracked
	g := f.gc()
	f.pass(g)
	g.mu.Lock()
	own := len(g.sizes)
	g.mu.Unlock()
	if own != 0 {
		t.Fatalf("the collector measured %d retained directories itself while the tracker's first walk ran", own)
	}
	if got := gather(t, f, "keeplog_gc_retained_bytes"); got != 0 {
		t.Fatalf("retained bytes %v before the tracker has figures, want 0 (not measured yet)", got)
	}
	if got := gather(t, f, "keeplog_gc_retained_directories"); got != 1 {
		t.Fatalf("retained directories %v, want 1: only the bytes wait for the tracker", got)
	}
	tracked.walking = false
	f.clk.Step(time.Minute)
	f.pass(g)
	if got := gather(t, f, "keeplog_gc_retained_bytes"); got != 5<<20 {
		t.Fatalf("retained bytes after the tracker's first walk: %v, want its %d", got, 5<<20)
	}
}

// newRetentionFixture: retention 24 h, the disk a quarter used (no pressure).
func newRetentionFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.cfg.Policy.RetainFor = 24 * time.Hour
	f.disk = func() (DiskUsage, error) { return DiskUsage{Size: 1000, Used: 250, Avail: 750}, nil }
	return f
}

// retainedDir makes volume v<n>:node-a:pvc-<n> with one pod directory holding 64 KiB, unpublished, and returns it.
func (f *fixture) retainedDir(n string) string {
	id := "v" + n + ":node-a:pvc-" + n
	f.volume(id, store.Persistent, "pvc-"+n, nil)
	dir, target := f.podDir(id, 64<<10)
	f.unpublish(id, target)
	return dir
}
