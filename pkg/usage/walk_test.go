package usage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keeplog/keeplog/internal/liveness"
	"github.com/keeplog/keeplog/pkg/store"
)

// TestWalkEvaluatesPerVolumeTouched counts the volume evaluations of walks: the first walk evaluates a volume once
// per pod directory it measured (linear), a walk that finds nothing changed evaluates none, and a change in one
// volume evaluates that volume. The quadratic walk evaluated every volume after each pod directory (here 40 x 120).
func TestWalkEvaluatesPerVolumeTouched(t *testing.T) {
	f := newFixture(t, "")
	const vols, perVol = 40, 3
	var last []string
	for i := range vols {
		var pods []string
		for j := range perVol {
			pods = append(pods, fmt.Sprintf("p%d-%d", i, j))
		}
		last = f.volume(fmt.Sprintf("vol-%02d", i), 1<<30, nil, pods...)
	}
	for _, d := range last {
		writeFile(t, filepath.Join(d, "app", "a.log"), 5000)
	}
	f.start(Config{}, nil)
	if n := f.tr.evaluations.Load(); n > vols*perVol+vols {
		t.Fatalf("the first walk made %d volume evaluations for %d volumes of %d pod directories: want at most one per directory and volume", n, vols, vols*perVol)
	}
	count := func(what string) int64 {
		t.Helper()
		n0 := f.tr.evaluations.Load()
		if err := f.tr.walkAll(f.ctx); err != nil {
			t.Fatal(err)
		}
		f.tr.evaluate()
		return f.tr.evaluations.Load() - n0
	}
	f.tr.flush(f.ctx)
	if n := count("unchanged"); n != 0 {
		t.Fatalf("a walk that found nothing changed made %d evaluations, want 0", n)
	}
	writeFile(t, filepath.Join(last[0], "app", "b.log"), 5000)
	f.tr.flush(f.ctx) // the event, or else the walk, finds the new file
	if n := count("after a change"); n > 1 {
		t.Fatalf("one volume changed: %d evaluations, want at most 1", n)
	}
	f.waitUsage(t, fmt.Sprintf("vol-%02d", vols-1), du(t, last...))
}

// TestRetainedVolumeKeptByItsTotals: a volume whose pods are all gone keeps only its totals (no per-file maps, no
// watches) and stays correct through walks; published again, it is kept entry by entry and followed by events.
func TestRetainedVolumeKeptByItsTotals(t *testing.T) {
	f := newFixture(t, "")
	dirs := f.volume("vol-r", 1<<30, nil, "p1")
	writeFile(t, filepath.Join(dirs[0], "app", "a.log"), 20000)
	if err := f.st.RemoveTarget("vol-r", "/target/vol-r/p1"); err != nil {
		t.Fatal(err)
	}
	f.start(Config{}, nil)
	f.waitUsage(t, "vol-r", du(t, dirs...))
	name := filepath.Base(dirs[0])
	f.tr.mu.Lock()
	compact := f.tr.dirs[name].t.compacted()
	f.tr.mu.Unlock()
	if !compact {
		t.Fatal("the retained directory keeps its per-file maps")
	}
	if w := f.tr.w.WatchList(); len(w) != 0 && containsPrefix(w, dirs[0]) {
		t.Fatalf("the retained directory is watched: %v", w)
	}
	writeFile(t, filepath.Join(dirs[0], "app", "late.log"), 30000)
	if err := f.tr.walkAll(f.ctx); err != nil {
		t.Fatal(err)
	}
	f.waitUsage(t, "vol-r", du(t, dirs...))

	if err := f.st.AddTarget("vol-r", store.Target{Path: "/target/vol-r/p1", PodDir: name}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, f, "kept entry by entry once published", func() bool {
		f.tr.mu.Lock()
		defer f.tr.mu.Unlock()
		d := f.tr.dirs[name]
		return d != nil && d.t != nil && !d.t.compacted()
	})
	writeFile(t, filepath.Join(dirs[0], "app", "new.log"), 40000)
	f.waitUsage(t, "vol-r", du(t, dirs...)) // from events: no walk
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// TestWalkNeverCrossesMounts: a tmpfs (another device) and a bind mount of a directory of the same filesystem
// (same st_dev, another mount ID) inside a pod directory are not counted, by the first walk, by events or by a
// later walk; a FIFO is counted (it is an inode) and never opened.
func TestWalkNeverCrossesMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mount")
	}
	f := newFixture(t, "")
	dirs := f.volume("vol-m", 1<<30, nil, "p1")
	pd := dirs[0]
	writeFile(t, filepath.Join(pd, "app", "a.log"), 12000)
	if err := syscall.Mkfifo(filepath.Join(pd, "app", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(filepath.Dir(f.st.Root()), "outside")
	writeFile(t, filepath.Join(outside, "big"), 500000)
	want := du(t, pd)
	for _, m := range []string{"tmp", "bind"} {
		if err := os.Mkdir(filepath.Join(pd, m), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mount(t, "-t", "tmpfs", "tmpfs", filepath.Join(pd, "tmp"))
	mount(t, "--bind", outside, filepath.Join(pd, "bind"))
	writeFile(t, filepath.Join(pd, "tmp", "on-tmpfs"), 300000)

	f.start(Config{}, nil)
	f.waitUsage(t, "vol-m", want)
	writeFile(t, filepath.Join(pd, "tmp", "more"), 100000)
	writeFile(t, filepath.Join(pd, "bind", "more"), 100000)
	if err := f.tr.walkAll(f.ctx); err != nil {
		t.Fatal(err)
	}
	f.tr.flush(f.ctx)
	if s, _ := f.tr.Status("vol-m"); s.Usage != want {
		t.Fatalf("after a walk: %+v, want %+v (the pod directory without what is mounted in it)", s.Usage, want)
	}
}

func mount(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Fatalf("mount %v: %v: %s", args, err, out)
	}
	target := args[len(args)-1]
	t.Cleanup(func() {
		if out, err := exec.Command("umount", target).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", target, err, out)
		}
	})
}

// TestStalledTrackerIsReported: a tracker whose loop is stuck (here in an Enforcer that never returns) stops
// recording progress, and the liveness check names it; a working one keeps its loop alive.
func TestStalledTrackerIsReported(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	live, err := liveness.New(clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, "")
	dirs := f.volume("vol-s", 64<<10, map[string]string{"limitAction": "block"}, "p1")
	stuck := &stuckEnforcer{called: make(chan struct{}), release: make(chan struct{})}
	tr, err := New(Config{UpdateInterval: 10 * time.Millisecond, BlockGrace: time.Nanosecond},
		Deps{Store: f.st, Enforcer: stuck, Clock: fixtureClock{f: f}, Live: live.Loop("usage", time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	t.Cleanup(func() { cancel(); close(stuck.release); <-done })

	// Alive: fake time passes the bound, and the loop records progress again at its next iteration.
	clk.Step(2 * time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for live.Check() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("a working tracker stays stalled: %v", live.Check())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Stuck: the volume goes over its limit, Block never returns.
	f.advance(time.Second)
	writeFile(t, filepath.Join(dirs[0], "big"), 100<<10)
	select {
	case <-stuck.called:
	case <-time.After(10 * time.Second):
		t.Fatal("the tracker never tried to block the volume")
	}
	clk.Step(2 * time.Minute)
	if err := live.Check(); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Fatalf("stuck tracker: check %v, want usage named stalled", err)
	}
}

type stuckEnforcer struct {
	called, release chan struct{}
	once            bool
}

func (e *stuckEnforcer) Name() string { return "stuck" }
func (e *stuckEnforcer) Block(string) error {
	if !e.once {
		e.once = true
		close(e.called)
	}
	<-e.release
	return nil
}
func (e *stuckEnforcer) Unblock(string) error       { return nil }
func (e *stuckEnforcer) Blocked() ([]string, error) { return nil, nil }

// TestPeriodicWalkTakesAShareOfTheRetained: a periodic walk measures every published pod directory but only its
// share of the retained ones (a full walk of 10,000 retained directories every minute was most of an idle node's
// CPU), and retainedWalkEvery walks measure each retained one once, so a change made by hand is corrected.
func TestPeriodicWalkTakesAShareOfTheRetained(t *testing.T) {
	f := newFixture(t, "")
	const retained = 240
	var dirs []string
	for i := range retained {
		id := fmt.Sprintf("vol-r%d", i)
		dirs = append(dirs, f.volume(id, 1<<30, nil, fmt.Sprintf("p%d", i))...)
		if err := f.st.RemoveTarget(id, fmt.Sprintf("/target/%s/p%d", id, i)); err != nil {
			t.Fatal(err)
		}
	}
	live := f.volume("vol-live", 1<<30, nil, "live")
	f.start(Config{WalkRate: -1}, nil)
	measured := func() uint64 {
		var m dto.Metric
		if err := f.tr.m.walkSeconds.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount()
	}
	writeFile(t, filepath.Join(dirs[7], "app", "by-hand.log"), 50000)
	before := measured()
	if err := f.tr.periodicWalk(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := measured() - before; n > 1+2*retained/retainedWalkEvery+4 {
		t.Errorf("one periodic walk measured %d pod directories; want the published one and about %d retained", n, retained/retainedWalkEvery)
	}
	for range retainedWalkEvery - 1 {
		if err := f.tr.periodicWalk(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := measured() - before; n != retainedWalkEvery+retained {
		t.Errorf("%d periodic walks measured %d pod directories, want %d (the published one each time, each retained once)",
			retainedWalkEvery, n, retainedWalkEvery+retained)
	}
	f.waitUsage(t, "vol-r7", du(t, dirs[7]))
	f.waitUsage(t, "vol-live", du(t, live...))
}
