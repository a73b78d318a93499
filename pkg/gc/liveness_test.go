package gc

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keeplog/keeplog/internal/liveness"
)

const gcBound = 10 * time.Minute

// liveGC runs the collector with a liveness loop on the fixture's fake clock; its disk is read through statfs.
func (f *fixture) liveGC(statfs func() (DiskUsage, error)) *liveness.Registry {
	f.t.Helper()
	live, err := liveness.New(f.clk, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	g, err := New(f.cfg, Deps{Store: f.st, Clock: f.clk, Liveness: live.Loop("gc", gcBound),
		Statfs: func(string) (DiskUsage, error) { return statfs() }})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	f.t.Cleanup(func() { cancel(); <-done })
	return live
}

// A pass blocked in its work (statfs on a hung filesystem) makes no progress: the loop is reported stalled.
func TestStuckPassIsReportedStalled(t *testing.T) {
	f := newFixture(t)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	live := f.liveGC(func() (DiskUsage, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return DiskUsage{Size: 100, Used: 10, Avail: 90}, nil
	})
	t.Cleanup(func() { close(release) }) // before the collector is stopped (cleanups run last first)
	<-entered
	f.clk.Step(gcBound - time.Second)
	if err := live.Check(); err != nil {
		t.Fatalf("stalled within its bound: %v", err)
	}
	f.clk.Step(2 * time.Second)
	if err := live.Check(); err == nil || !strings.Contains(err.Error(), "gc") {
		t.Fatalf("a pass blocked for longer than the bound: Check() = %v, want the gc loop stalled", err)
	}
}

// A healthy collector waiting hours for its next pass (an interval far beyond its bound) is never stalled: it
// records progress on its heartbeat.
func TestIdleCollectorIsNotStalled(t *testing.T) {
	f := newFixture(t)
	f.cfg.Interval = time.Hour
	live := f.liveGC(func() (DiskUsage, error) { return DiskUsage{Size: 100, Used: 10, Avail: 90}, nil })
	for range 3 * 4 * 6 { // three intervals, a heartbeat at a time
		f.clk.Step(gcBound / 4)
		waitProgress(t, live)
		if err := live.Check(); err != nil {
			t.Fatalf("idle collector at %s: %v", f.clk.Since(t0), err)
		}
	}
}

// waitProgress waits until every loop has recorded progress at the fake clock's current time.
func waitProgress(t *testing.T, live *liveness.Registry) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(live) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no progress recorded after a heartbeat (age %vs)", testutil.ToFloat64(live))
		}
		time.Sleep(time.Millisecond)
	}
}
