package main

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/liveness"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// TestSetupUsageRecordsLiveness: the usage tracker's loop is registered with the liveness registry, so /healthz
// fails when it stalls.
func TestSetupUsageRecordsLiveness(t *testing.T) {
	o := parseGC(t, "--root="+filepath.Join(t.TempDir(), "root"), "--usage-enforcer=none")
	st, err := store.Open(o.Root, clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	c := &components{opts: o, store: st, reg: prometheus.NewRegistry()}
	if c.live, err = liveness.New(nil, c.reg); err != nil {
		t.Fatal(err)
	}
	if err := setupUsage(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := c.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var loops []string
	for _, mf := range mfs {
		if mf.GetName() != api.MetricLoopLastProgressSeconds {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				loops = append(loops, l.GetValue())
			}
		}
	}
	if !slices.Equal(loops, []string{"usage"}) {
		t.Fatalf("loops recording progress: %v, want [usage]", loops)
	}
}
