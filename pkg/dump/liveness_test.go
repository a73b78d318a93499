package dump

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"

	"github.com/keeplog/keeplog/internal/liveness"
	"github.com/keeplog/keeplog/pkg/store"
)

const dumpBound = 5 * time.Minute

// runLive runs the manager of an env polling every poll, whose deps tweak changes, with a liveness loop on the env's fake clock.
func runLive(t *testing.T, poll time.Duration, tweak func(*Deps)) (*env, *liveness.Registry) {
	t.Helper()
	var live *liveness.Registry
	e := newEnv(t, nil, func(c *Config, d *Deps) {
		c.PollInterval = poll
		var err error
		if live, err = liveness.New(d.Clock, nil); err != nil {
			t.Fatal(err)
		}
		d.Liveness = live.Loop("dump", dumpBound)
		if tweak != nil {
			tweak(d)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e, live
}

// A poll blocked in its work (the pod lookup hangs) makes no progress: the loop is reported stalled.
func TestStuckPollIsReportedStalled(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	e, live := runLive(t, time.Second, func(d *Deps) {
		pods := d.Pods
		d.Pods = func(ref store.PodRef) (*corev1.Pod, bool) {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
			return pods(ref)
		}
	})
	t.Cleanup(func() { close(release) }) // before the manager is stopped (cleanups run last first)
	<-entered
	e.clk.Step(dumpBound - time.Second)
	if err := live.Check(); err != nil {
		t.Fatalf("stalled within its bound: %v", err)
	}
	e.clk.Step(2 * time.Second)
	if err := live.Check(); err == nil || !strings.Contains(err.Error(), "dump") {
		t.Fatalf("a poll blocked for longer than the bound: Check() = %v, want the dump loop stalled", err)
	}
}

// A healthy manager polling an opted-in pod, or waiting with a poll interval beyond its bound, is never stalled.
func TestIdleManagerIsNotStalled(t *testing.T) {
	for _, poll := range []time.Duration{time.Second, time.Hour} {
		e, live := runLive(t, poll, nil)
		for range 24 {
			e.clk.Step(dumpBound / 4)
			deadline := time.Now().Add(10 * time.Second)
			for testutil.ToFloat64(live) != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("poll %s: no progress after a heartbeat (age %vs)", poll, testutil.ToFloat64(live))
				}
				time.Sleep(time.Millisecond)
			}
			if err := live.Check(); err != nil {
				t.Fatalf("poll %s: %v", poll, err)
			}
		}
	}
}
