//go:build soak

package soak

import (
	"testing"
	"time"
)

// heapTarget is issue 14's target for a keeplog run, as a share of the recipe's time.
func heapTarget(name string) float64 {
	if name == "keeplog-zstd" {
		return 0.35
	}
	return 1.05
}

// printHeapBench prints each run's figures and keeplog's ratios to the recipe against the targets.
func printHeapBench(b *testing.B, res map[string]heapRun) {
	for _, name := range []string{"recipe", "keeplog-raw", "keeplog-zstd"} {
		r, ok := res[name]
		if !ok {
			continue
		}
		gb := float64(r.raw) / 1e9
		b.Logf("%-13s %8s  ratio %.2f  %6.1f MB/s of dumps, %5.1f MB/s on the wire  CPU %6.1fs = %.2f s/GB  (load %s → %s)",
			name, r.wall.Round(time.Second), float64(r.raw)/float64(r.stored), float64(r.raw)/1e6/r.wall.Seconds(),
			float64(r.stored)/1e6/r.wall.Seconds(), r.cpu.Seconds(), r.cpu.Seconds()/gb, r.loadStart, r.loadDone)
	}
	rec, ok := res["recipe"]
	if !ok {
		return
	}
	for _, name := range []string{"keeplog-raw", "keeplog-zstd"} {
		r, ok := res[name]
		if !ok {
			continue
		}
		x := r.wall.Seconds() / rec.wall.Seconds()
		verdict := "meets"
		if x > heapTarget(name) {
			verdict = "misses"
		}
		b.Logf("%s / recipe: %.3f× the time (target ≤ %.2f×: %s)", name, x, heapTarget(name), verdict)
		b.ReportMetric(x, "x-recipe-"+name[len("keeplog-"):])
	}
}
