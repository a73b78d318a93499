// Package liveness lets every long-running loop of the node plugin prove that it is alive. A loop that deadlocks
// (the archiver once did, inside fsnotify) serves nothing and reports nothing, so keeplog cannot find it out by
// asking the loop: each loop records its own progress, and /healthz fails when one has made none for its bound, so
// that kubelet's liveness probe restarts a wedged plugin. keeplog_loop_last_progress_seconds{loop} shows the age of
// each loop's last progress.
//
// A loop that may wait longer than its bound for work records progress on a heartbeat too (Loop.Heartbeat): a loop
// blocked anywhere but in its own select cannot.
package liveness

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/pkg/api"
)

// Registry holds the node plugin's loops. Create it with New.
type Registry struct {
	clk   clock.PassiveClock
	mu    sync.Mutex
	loops map[string]*Loop
	desc  *prometheus.Desc
}

// New makes a registry; its metric is registered on reg when reg is not nil.
func New(clk clock.PassiveClock, reg prometheus.Registerer) (*Registry, error) {
	if clk == nil {
		clk = clock.RealClock{}
	}
	r := &Registry{clk: clk, loops: map[string]*Loop{},
		desc: prometheus.NewDesc(api.MetricLoopLastProgressSeconds, "Seconds since a long-running loop of keeplog last made progress.", []string{"loop"}, nil)}
	if reg != nil {
		if err := reg.Register(r); err != nil {
			return nil, fmt.Errorf("liveness: register metric: %w", err)
		}
	}
	return r, nil
}

// Loop registers (or returns the already registered) loop name, stalled once it has made no progress for bound.
// Its clock starts now: a loop that never starts is reported after bound. On a nil Registry it returns nil (a
// valid Loop that records nothing), so that components take a Registry as an optional dependency.
func (r *Registry) Loop(name string, bound time.Duration) *Loop {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if l, ok := r.loops[name]; ok {
		return l
	}
	l := &Loop{name: name, bound: bound, clk: r.clk}
	l.Progress()
	r.loops[name] = l
	return l
}

// Check returns an error naming every loop that has made no progress within its bound; nil when all are alive.
func (r *Registry) Check() error {
	now := r.clk.Now()
	var stalled []string
	for _, l := range r.sorted() {
		if age := l.age(now); age > l.bound {
			stalled = append(stalled, fmt.Sprintf("%s (no progress for %s, bound %s)", l.name, age.Round(time.Second), l.bound))
		}
	}
	if len(stalled) > 0 {
		return fmt.Errorf("stalled loops: %s", strings.Join(stalled, ", "))
	}
	return nil
}

func (r *Registry) sorted() []*Loop {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Loop, 0, len(r.loops))
	for _, l := range r.loops {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Describe implements prometheus.Collector.
func (r *Registry) Describe(ch chan<- *prometheus.Desc) { ch <- r.desc }

// Collect implements prometheus.Collector.
func (r *Registry) Collect(ch chan<- prometheus.Metric) {
	now := r.clk.Now()
	for _, l := range r.sorted() {
		ch <- prometheus.MustNewConstMetric(r.desc, prometheus.GaugeValue, l.age(now).Seconds(), l.name)
	}
}

// Loop is one long-running loop's progress. A nil *Loop is valid and records nothing, so packages take one as an
// optional dependency.
type Loop struct {
	name  string
	bound time.Duration
	clk   clock.PassiveClock
	last  atomic.Int64 // UnixNano of the last progress
}

// Progress records that the loop made progress now.
func (l *Loop) Progress() {
	if l == nil {
		return
	}
	l.last.Store(l.clk.Now().UnixNano())
}

// Heartbeat is how often a loop that waits for work should record progress while idle: a quarter of its bound
// (one hour when l is nil, so that a loop without a registry wakes rarely).
func (l *Loop) Heartbeat() time.Duration {
	if l == nil {
		return time.Hour
	}
	return l.bound / 4
}

func (l *Loop) age(now time.Time) time.Duration { return now.Sub(time.Unix(0, l.last.Load())) }
