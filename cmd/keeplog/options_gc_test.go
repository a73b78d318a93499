package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/liveness"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/archiver"
	"github.com/keeplog/keeplog/pkg/gc"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
)

func parseGC(t *testing.T, args ...string) *Options {
	t.Helper()
	o := &Options{}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(append([]string{"--node-id=node-1"}, args...)); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestGCFlags(t *testing.T) {
	o := parseGC(t)
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	want := GCOptions{RetainFor: 168 * time.Hour, MaxRetainFor: 720 * time.Hour, Interval: time.Minute, OrphanPVGrace: 24 * time.Hour,
		KubeletRootDir: "/var/lib/kubelet", RuntimeDir: "/var/lib/containerd"}
	if o.GC != want {
		t.Fatalf("defaults %+v, want %+v", o.GC, want)
	}
	if d := o.GC.policyDefaults(); d.RetainFor != 168*time.Hour || d.MaxRetainFor != 720*time.Hour {
		t.Fatalf("policy defaults %+v", d)
	}
	o = parseGC(t, "--retain-for=20s", "--gc-interval=2s", "--gc-dry-run", "--gc-delete-unarchived", "--disk-high-watermark=85.5")
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if c, err := o.GC.config("node-1", "keeplog.csi.io", gc.Shared{}); err != nil || c.Policy.RetainFor != 20*time.Second || c.Interval != 2*time.Second ||
		!c.DryRun || !c.DeleteUnarchived || c.HighWatermark != 85.5 || c.Node != "node-1" || c.Validate() != nil {
		t.Fatalf("config %+v (%v)", c, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--retain-for=0s"}, "--retain-for"},
		{[]string{"--retain-for=1000h"}, "--max-retain-for"},
		{[]string{"--gc-interval=100ms"}, "--gc-interval"},
		{[]string{"--disk-high-watermark=0"}, "--disk-high-watermark"},
		{[]string{"--disk-hard-limit=101"}, "--disk-hard-limit"},
		{[]string{"--disk-inode-low-watermark=-1"}, "--disk-inode-low-watermark"},
		{[]string{"--orphan-pv-grace=0s"}, "--orphan-pv-grace"},
		{[]string{"--runtime-dir=containerd"}, "--runtime-dir"},
	} {
		err := parseGC(t, tc.args...).Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
}

// TestWatermarkDefaultsFollowTheFilesystem: below kubelet's thresholds when the root shares a filesystem with
// kubelet, its pod logs or the runtime, higher on a filesystem of its own; a flag set explicitly always wins, and
// an order that a default breaks is refused naming both flags.
func TestWatermarkDefaultsFollowTheFilesystem(t *testing.T) {
	shared := gc.Shared{With: map[string]bool{gc.NeighbourKubelet: false, gc.NeighbourRuntime: true}}
	own := gc.Shared{With: map[string]bool{gc.NeighbourKubelet: false}}
	type marks struct{ h, l, x, ih, il, ix float64 }
	of := func(c gc.Config) marks {
		return marks{c.HighWatermark, c.LowWatermark, c.HardLimit, c.InodeHighWatermark, c.InodeLowWatermark, c.InodeHardLimit}
	}
	for _, tc := range []struct {
		args   []string
		shared gc.Shared
		want   marks
	}{
		{nil, shared, marks{80, 70, 85, 80, 70, 85}},
		{nil, own, marks{90, 80, 95, 90, 80, 95}},
		{[]string{"--disk-high-watermark=90", "--disk-hard-limit=95", "--disk-inode-low-watermark=60"}, shared, marks{90, 70, 95, 80, 60, 85}},
		{[]string{"--disk-low-watermark=50"}, own, marks{90, 50, 95, 90, 80, 95}},
	} {
		o := parseGC(t, tc.args...)
		if err := o.Validate(); err != nil {
			t.Fatal(err)
		}
		c, err := o.GC.config("n", "d", tc.shared)
		if err != nil || of(c) != tc.want || c.Validate() != nil {
			t.Errorf("%v, shared %v: %+v (%v), want %+v", tc.args, tc.shared.With, of(c), err, tc.want)
		}
	}
	_, err := parseGC(t, "--disk-high-watermark=88").GC.config("n", "d", shared)
	if err == nil || !strings.Contains(err.Error(), "--disk-high-watermark 88 must not exceed --disk-hard-limit 85 (default)") {
		t.Fatalf("high above the shared default hard limit: %v", err)
	}
}

// noDialer refuses every connection: the archiver below never runs, the GC only asks it what is pending.
type noDialer struct{}

func (noDialer) Dial(context.Context) (archiver.Remote, error) {
	return nil, errors.New("not connected")
}

func TestSetupGCWiresAdmissionAndArchive(t *testing.T) {
	o := parseGC(t, "--root="+filepath.Join(t.TempDir(), "root"))
	st, err := store.Open(o.Root, clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	c := &components{opts: o, store: st, reg: prometheus.NewRegistry()}
	if c.live, err = liveness.New(nil, c.reg); err != nil {
		t.Fatal(err)
	}
	c.policy = policy.NewResolver(st, nil, o.GC.policyDefaults())
	if c.archiver, err = archiver.New(archiver.Config{NodeName: "n", Target: archiver.Target{BaseDir: "/archive"}},
		archiver.Deps{Root: o.Root, StateDir: filepath.Join(t.TempDir(), "journal"), Dialer: noDialer{}}); err != nil {
		t.Fatal(err)
	}
	if err := setupGC(c); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(c.reg, api.MetricLoopLastProgressSeconds); err != nil || n != 1 {
		t.Fatalf("%d series of %s (%v), want the gc loop's", n, api.MetricLoopLastProgressSeconds, err)
	}
	if c.deps.Admission == nil {
		t.Fatal("the driver gets no admission: new volumes would never be refused past the hard limit")
	}
	if len(c.runners) != 1 || c.runners[0].name != "garbage collector" {
		t.Fatalf("runners %+v: want the collector only (no API, no leader election)", c.runners)
	}
	if err := c.deps.Admission.AdmitVolume(); err != nil && !strings.Contains(err.Error(), o.Root) {
		t.Fatalf("AdmitVolume: %v", err)
	}
	// An orphan directory long expired stays while the archiver says it has work for it: a heap dump not archived.
	orphan := filepath.Join(o.Root, "ns_pod_0f8c6a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f")
	if err := os.MkdirAll(filepath.Join(orphan, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(orphan, "app", "java_pid1.hprof"), []byte("dump"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-365 * 24 * time.Hour)
	if err := os.Chtimes(orphan, old, old); err != nil {
		t.Fatal(err)
	}
	g := c.gc
	if res, err := g.Pass(context.Background()); err != nil || len(res.Deleted) != 0 {
		t.Fatalf("pass deleted %+v (%v) although the archiver has work pending", res.Deleted, err)
	}
}
