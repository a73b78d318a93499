//go:build soak

package heapdumps

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestMakeHeapDumps makes (or finds in the cache) the benchmark's KEEPLOG_HEAP_BENCH_COUNT dumps (default 25) and
// prints each one's size and zstd -3 ratio: `make heapdumps` fills the cache ahead of `make bench`.
func TestMakeHeapDumps(t *testing.T) {
	n := 25
	if v, err := strconv.Atoi(os.Getenv("KEEPLOG_HEAP_BENCH_COUNT")); err == nil && v > 0 {
		n = v
	}
	start := time.Now()
	dumps, err := GetAll(context.Background(), Specs(n), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	var raw, z int64
	for _, d := range dumps {
		t.Logf("%s", d)
		if d.Bytes < d.Size*8/10 || d.Bytes > d.Size*13/10 {
			t.Errorf("%s: %d bytes, asked for about %d", d.Path, d.Bytes, d.Size)
		}
		raw, z = raw+d.Bytes, z+d.Zstd3
	}
	t.Logf("%d dumps, %.1f GiB, zstd -3 ratio %.2f overall (%s)", n, float64(raw)/(1<<30), float64(raw)/float64(z),
		time.Since(start).Round(time.Second))
}
