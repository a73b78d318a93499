//go:build soak

package soak

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/keeplog/keeplog/test/binary"
)

// metricGOGC is the Go collector's reading of runtime/metrics /gc/gogc:percent: what debug.SetGCPercent last set,
// else what GOGC said, else 100. It is the in-process value; the environment (/proc/PID/environ) would not show a
// default keeplog sets itself.
const metricGOGC = "go_gc_gogc_percent"

// TestBinaryGOGCDefault is cmd/keeplog/gcpercent.go's promise through the shipped binary: with no GOGC in its
// environment keeplog collects at 50 (the Go default is 100), and GOGC in the environment (the chart's extraEnv)
// wins, here GOGC=100. Both read from keeplog's own /metrics.
func TestBinaryGOGCDefault(t *testing.T) {
	// keeplog inherits the test's environment: no GOGC at all there (t.Setenv restores the caller's afterwards).
	t.Setenv("GOGC", "")
	if err := os.Unsetenv("GOGC"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		name string
		env  []string
		want float64
	}{
		{"no GOGC", nil, 50},
		{"GOGC=100", []string{"GOGC=100"}, 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			work := t.TempDir()
			kl, err := binary.StartKeeplog(ctx, binary.Config{WorkDir: filepath.Join(work, "keeplog"), Env: c.env})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = kl.Stop() }()
			m, err := binary.Scrape(ctx, kl.HTTPAddr)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := m[metricGOGC]
			if !ok {
				t.Fatalf("/metrics has no %s; keeplog's log:\n%s", metricGOGC, kl.LogTail(20))
			}
			t.Logf("%s: %s %v", c.name, metricGOGC, got)
			if got != c.want {
				t.Errorf("%s: %s %v, want %v", c.name, metricGOGC, got, c.want)
			}
		})
	}
}
