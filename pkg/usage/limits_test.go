package usage

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

func waitFor(t *testing.T, f *fixture, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		f.tr.flush(f.ctx)
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; events %v; enforcer calls %v", what, f.events.reasons(), f.enf.calls)
}

func TestWarnSendsEventsAndNeverBlocks(t *testing.T) {
	f := newFixture(t, "")
	dirs := f.volume("vol-w", 100<<10, nil, "p1")
	f.start(Config{}, f.enf)
	writeFile(t, filepath.Join(dirs[0], "big"), 200<<10)
	waitFor(t, f, "over limit", func() bool { s, _ := f.tr.Status("vol-w"); return s.OverLimit })
	if got := f.events.reasons(); !slices.Equal(got, []string{"p1 " + api.ReasonVolumeOverLimit}) {
		t.Fatalf("events = %v, want one %s on p1", got, api.ReasonVolumeOverLimit)
	}
	if !strings.Contains(f.events.log[0], "limitAction warn") {
		t.Fatalf("event message %q does not name the action", f.events.log[0])
	}
	if len(f.enf.calls) != 0 {
		t.Fatalf("warn volume was enforced: %v", f.enf.calls)
	}
	if err := os.Remove(filepath.Join(dirs[0], "big")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, f, "back under", func() bool { s, _ := f.tr.Status("vol-w"); return !s.OverLimit })
	if got := f.events.reasons(); len(got) != 2 || got[1] != "p1 "+api.ReasonVolumeBackUnderLimit {
		t.Fatalf("events = %v, want %s then %s", got, api.ReasonVolumeOverLimit, api.ReasonVolumeBackUnderLimit)
	}
}

// TestBlockOnlyPublishedAndOverLimit: a block volume over its limit blocks its published pod directories (not its
// unpublished ones, nor another volume's), blocks again when entries appear, and releases them when it is back
// under its limit or the pod is gone.
func TestBlockOnlyPublishedAndOverLimit(t *testing.T) {
	f := newFixture(t, "")
	block := map[string]string{"limitAction": "block"}
	dirs := f.volume("vol-b", 100<<10, block, "p1", "p2")
	other := f.volume("vol-o", 100<<10, block, "q1")
	// p2's pod is gone: unpublished.
	if err := f.st.RemoveTarget("vol-b", "/target/vol-b/p2"); err != nil {
		t.Fatal(err)
	}
	f.start(Config{}, f.enf)
	writeFile(t, filepath.Join(dirs[0], "a"), 60<<10)
	writeFile(t, filepath.Join(dirs[1], "b"), 60<<10)
	writeFile(t, filepath.Join(other[0], "c"), 20<<10)
	waitFor(t, f, "p1 blocked", func() bool { return f.enf.isBlocked(dirs[0]) })
	if f.enf.isBlocked(dirs[1]) || f.enf.isBlocked(other[0]) {
		t.Fatalf("blocked %v; only %s should be", f.enf.calls, dirs[0])
	}
	if got := f.events.reasons(); !slices.Equal(got, []string{"p1 " + api.ReasonVolumeOverLimit, "p1 " + api.ReasonVolumeBlocked}) {
		t.Fatalf("events = %v", got)
	}
	s, _ := f.tr.Status("vol-b")
	if !slices.Equal(s.Blocked, []string{filepath.Base(dirs[0])}) {
		t.Fatalf("status blocked = %v", s.Blocked)
	}
	// No new entries: no second Block. A new entry (one that slipped in): Block again.
	calls := len(f.enf.calls)
	f.tr.flush(f.ctx)
	if len(f.enf.calls) != calls {
		t.Fatalf("blocked again without a change: %v", f.enf.calls)
	}
	writeFile(t, filepath.Join(dirs[0], "slipped-in"), 10)
	waitFor(t, f, "a second block", func() bool { return len(f.enf.calls) == calls+1 })

	// Back under: released, and an Event says so.
	if err := os.Remove(filepath.Join(dirs[1], "b")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, f, "unblocked", func() bool { return !f.enf.isBlocked(dirs[0]) })
	if got := f.events.reasons(); got[len(got)-1] != "p1 "+api.ReasonVolumeBackUnderLimit {
		t.Fatalf("events = %v, want %s last", got, api.ReasonVolumeBackUnderLimit)
	}

	// Over again, then the pod goes (unpublish): released although still over.
	writeFile(t, filepath.Join(dirs[1], "b"), 60<<10)
	waitFor(t, f, "blocked again", func() bool { return f.enf.isBlocked(dirs[0]) })
	if err := f.st.RemoveTarget("vol-b", "/target/vol-b/p1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, f, "released after unpublish", func() bool { return !f.enf.isBlocked(dirs[0]) })
	if s, _ := f.tr.Status("vol-b"); !s.OverLimit {
		t.Fatal("volume should still be over its limit")
	}
}

func TestBlockGraceForNewPodDirectory(t *testing.T) {
	f := newFixture(t, "")
	f.start(Config{BlockGrace: time.Minute}, f.enf)
	dirs := f.volume("vol-g", 10<<10, map[string]string{"limitAction": "block"}, "p1")
	writeFile(t, filepath.Join(dirs[0], "a"), 60<<10)
	waitFor(t, f, "over limit", func() bool { s, _ := f.tr.Status("vol-g"); return s.OverLimit })
	if f.enf.isBlocked(dirs[0]) {
		t.Fatal("blocked within the grace period")
	}
	f.advance(time.Minute)
	waitFor(t, f, "blocked after the grace period", func() bool { return f.enf.isBlocked(dirs[0]) })
}

// TestRestartReleasesOldBlocks: blocks a previous run left are released when they no longer apply.
func TestRestartReleasesOldBlocks(t *testing.T) {
	f := newFixture(t, "")
	dirs := f.volume("vol-r", 10<<20, map[string]string{"limitAction": "block"}, "p1")
	f.enf.blocked[dirs[0]] = true
	f.enf.blocked[filepath.Join(f.st.Root(), "ns_gone_uid")] = true
	f.start(Config{}, f.enf)
	waitFor(t, f, "old blocks released", func() bool { b, _ := f.enf.Blocked(); return len(b) == 0 })
}

func TestInlineVolumeSizeAttribute(t *testing.T) {
	f := newFixture(t, "")
	if _, err := f.st.CreateVolume(&store.Volume{ID: "csi-inline", Kind: store.Ephemeral, Node: "n",
		Parameters: map[string]string{"size": "1Mi"}}); err != nil {
		t.Fatal(err)
	}
	f.start(Config{}, nil)
	s, ok := f.tr.Status("csi-inline")
	if !ok || s.LimitBytes != 1<<20 {
		t.Fatalf("status = %+v (%v), want a limit of 1Mi", s, ok)
	}
}

func TestReservedAndMetrics(t *testing.T) {
	f := newFixture(t, "")
	dirs := f.volume("vol-1", 1<<20, nil, "p1")
	f.volume("vol-unused", 2<<20, nil)             // created, its pod about to start: may grow into all of it
	gone := f.volume("vol-gone", 4<<20, nil, "g1") // its pod is gone: does not grow
	if err := f.st.RemoveTarget("vol-gone", "/target/vol-gone/g1"); err != nil {
		t.Fatal(err)
	}
	_ = gone
	reg := prometheus.NewRegistry()
	tr, err := New(Config{}, Deps{Store: f.st, Registerer: reg, Clock: fixtureClock{f: f}})
	if err != nil {
		t.Fatal(err)
	}
	stop, err := tr.start(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	f.tr = tr
	writeFile(t, filepath.Join(dirs[0], "a"), 100<<10)
	want := du(t, dirs[0])
	f.waitUsage(t, "vol-1", want)
	got, ok := tr.Reserved()
	if wantR := (1<<20 - want.Bytes) + 2<<20; !ok || got != wantR {
		t.Fatalf("reserved = %d, want %d", got, wantR)
	}
	if v := (gaugeFor(t, reg, "keeplog_volume_used_bytes", "vol-1")); int64(v) != want.Bytes {
		t.Fatalf("keeplog_volume_used_bytes = %v, want %d", v, want.Bytes)
	}
	if v := (gaugeFor(t, reg, "keeplog_volume_limit_bytes", "vol-1")); v != 1<<20 {
		t.Fatalf("keeplog_volume_limit_bytes = %v", v)
	}
	// The retained volume has no series: a node keeps thousands, five series each, rebuilt at every scrape.
	if n := seriesFor(t, reg, "vol-gone"); n != 0 {
		t.Fatalf("%d series of the retained volume vol-gone, want none", n)
	}
}

// seriesFor counts the gathered series labelled with a volume.
func seriesFor(t *testing.T, reg *prometheus.Registry, volume string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "volume" && l.GetValue() == volume {
					n++
				}
			}
		}
	}
	return n
}

// gaugeFor reads one series of a gathered gauge.
func gaugeFor(t *testing.T, reg *prometheus.Registry, name, volume string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "volume" && l.GetValue() == volume {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{volume=%q}", name, volume)
	return 0
}
