package liveness

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keeplog/keeplog/pkg/api"
)

func TestCheckNamesOnlyStalledLoops(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	reg := prometheus.NewRegistry()
	r, err := New(clk, reg)
	if err != nil {
		t.Fatal(err)
	}
	a := r.Loop("archiver", 10*time.Second)
	b := r.Loop("gc", time.Minute)
	if r.Loop("archiver", time.Hour) != a {
		t.Fatal("Loop registered the same name twice")
	}
	if err := r.Check(); err != nil {
		t.Fatalf("fresh loops: %v", err)
	}
	clk.Step(11 * time.Second)
	err = r.Check()
	if err == nil || !strings.Contains(err.Error(), "archiver") || strings.Contains(err.Error(), "gc") {
		t.Fatalf("after 11s: %v, want only archiver stalled", err)
	}
	a.Progress()
	if err := r.Check(); err != nil {
		t.Fatalf("after progress: %v", err)
	}
	clk.Step(50 * time.Second)
	b.Progress()
	want := `
# HELP keeplog_loop_last_progress_seconds Seconds since a long-running loop of keeplog last made progress.
# TYPE keeplog_loop_last_progress_seconds gauge
keeplog_loop_last_progress_seconds{loop="archiver"} 50
keeplog_loop_last_progress_seconds{loop="gc"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), api.MetricLoopLastProgressSeconds); err != nil {
		t.Fatal(err)
	}
}

func TestNilLoopIsANoOp(t *testing.T) {
	var l *Loop
	l.Progress()
	if l.Heartbeat() != time.Hour {
		t.Fatalf("nil heartbeat %s", l.Heartbeat())
	}
	var none *Registry
	if none.Loop("x", time.Second) != nil {
		t.Fatal("a nil Registry made a Loop")
	}
	r, _ := New(clocktesting.NewFakeClock(time.Unix(0, 0)), nil)
	if got := r.Loop("x", 8*time.Second).Heartbeat(); got != 2*time.Second {
		t.Fatalf("heartbeat %s, want 2s", got)
	}
}
