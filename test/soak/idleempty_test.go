//go:build soak

package soak

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keeplog/keeplog/test/binary"
)

// BenchmarkBinaryIdleEmpty is issue 13's size figure at rest: bin/keeplog (KEEPLOG_BIN) started with no Kubernetes
// API and no archive target on an empty root, left alone for KEEPLOG_IDLE_EMPTY_WAIT (default 30s); it prints the
// binary's size, RSS, the Go heap in use and the CPU over the wait, with the date. Printed, never asserted (target
// in issue 13: binary ≤ 35 MB, idle RSS ≤ 25 MiB).
func BenchmarkBinaryIdleEmpty(b *testing.B) {
	wait := 30 * time.Second
	if v := os.Getenv("KEEPLOG_IDLE_EMPTY_WAIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("KEEPLOG_IDLE_EMPTY_WAIT %q: a positive duration", v)
		}
		wait = d
	}
	bin, err := binary.FindBinary()
	if err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		kl, err := binary.StartKeeplog(ctx, binary.Config{Bin: bin, WorkDir: filepath.Join(b.TempDir(), "keeplog")})
		if err != nil {
			b.Fatal(err)
		}
		cpu0, err := binary.CPU(kl.Pid())
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(wait)
		cpu1, err := binary.CPU(kl.Pid())
		if err != nil {
			b.Fatalf("keeplog exited: %v\n%s", err, kl.LogTail(20))
		}
		rss, err := binary.RSS(kl.Pid())
		if err != nil {
			b.Fatal(err)
		}
		samples, err := binary.Scrape(ctx, kl.HTTPAddr)
		if err != nil {
			b.Fatal(err)
		}
		heap, _ := samples.Sum("go_memstats_heap_inuse_bytes")
		b.Logf("%s  empty root, no API, idle %s: binary %.1f MB (%d bytes), RSS %.1f MiB, Go heap in use %.1f MiB, CPU %.2f%% of a core",
			time.Now().UTC().Format("2006-01-02 15:04"), wait, float64(st.Size())/1e6, st.Size(), float64(rss)/(1<<20),
			heap/(1<<20), 100*(cpu1-cpu0).Seconds()/wait.Seconds())
		if err := kl.Stop(); err != nil {
			b.Fatal(err)
		}
	}
}
