package gc

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// BenchmarkGCPass10000 is one full pass over 10,000 retained pod directories, each owned by its own volume (one
// generic ephemeral volume per pod, the worst case for record reads), each with a few files: records read, root
// listed, policies resolved, nothing expired, every directory measured (a cold size cache). Reported: seconds per
// pass, MiB allocated, and the process's peak RSS during the pass (VmHWM after resetting it). Goal: under 2 s. Then
// the CPU of the next pass with nothing changed (cpu-s/steady-pass), what an idle node pays every --gc-interval.
func BenchmarkGCPass10000(b *testing.B) {
	const n = 10000
	root := filepath.Join(b.TempDir(), "root")
	clk := clocktesting.NewFakeClock(t0)
	st, err := store.Open(root, clk)
	if err != nil {
		b.Fatal(err)
	}
	if err := writeRetained(root, n); err != nil {
		b.Fatal(err)
	}
	clk.Step(time.Hour)
	cfg := Config{Node: "node-a", DriverName: "keeplog.csi.io", Interval: time.Minute, HighWatermark: 90, LowWatermark: 80,
		HardLimit: 95, InodeHighWatermark: 90, InodeLowWatermark: 80, InodeHardLimit: 95, OrphanGrace: 24 * time.Hour}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		g, err := New(cfg, Deps{Store: st, Clock: clk, Registerer: prometheus.NewRegistry(), Archive: &fakeArchive{pending: map[string]bool{}},
			Statfs: func(string) (DiskUsage, error) { return DiskUsage{Size: 100, Used: 50, Avail: 50}, nil }})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		resetPeakRSS()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		cpu0 := cpuTime()
		b.StartTimer()
		start := time.Now()
		res, err := g.Pass(context.Background())
		elapsed := time.Since(start)
		b.StopTimer()
		cpu := cpuTime() - cpu0
		runtime.ReadMemStats(&after)
		if err != nil {
			b.Fatal(err)
		}
		if res.Retained != n || len(res.Deleted) != 0 {
			b.Fatalf("retained %d, deleted %d: want %d retained", res.Retained, len(res.Deleted), n)
		}
		b.ReportMetric(elapsed.Seconds(), "s/pass")
		b.ReportMetric(cpu.Seconds(), "cpu-s/pass") // user+sys: what the pass costs, whatever else the machine runs
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/(1<<20), "MiB-alloc/pass")
		if hwm, ok := peakRSS(); ok {
			b.ReportMetric(float64(hwm)/(1<<10), "MiB-peak-RSS")
		}
		if elapsed > 2*time.Second {
			b.Logf("WARNING: a pass over %d directories took %s, over the 2 s goal", n, elapsed)
		}
		// The next pass, nothing changed: what an idle node pays every --gc-interval.
		cpu0 = cpuTime()
		if _, err := g.Pass(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric((cpuTime() - cpu0).Seconds(), "cpu-s/steady-pass")
		b.StartTimer()
	}
}

// writeRetained lays out n unpublished pod directories, one volume each, the way the store writes them (without its
// fsyncs, which would make the setup take minutes).
func writeRetained(root string, n int) error {
	now := t0.Format(time.RFC3339Nano)
	for i := range n {
		ref := store.PodRef{Namespace: "team", Name: fmt.Sprintf("app-%d", i), UID: fmt.Sprintf("00000000-0000-0000-0000-%012d", i)}
		id := "v1:node-a:pvc-" + strconv.Itoa(i)
		vdir := filepath.Join(root, api.KeeplogDir, "volumes", id)
		for _, d := range []string{filepath.Join(vdir, "pods"), filepath.Join(vdir, "targets"),
			filepath.Join(root, ref.DirName(), "app"), filepath.Join(root, ref.DirName(), ".keeplog")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		vol, _ := json.Marshal(store.Volume{ID: id, Name: "pvc-" + strconv.Itoa(i), Kind: store.Persistent, Node: "node-a",
			Parameters: map[string]string{"csi.storage.k8s.io/pvc/name": "x", "retainFor": "72h"}})
		pd := fmt.Sprintf(`{"dir":%q,"pod":{"namespace":"team","name":%q,"uid":%q},"firstPublished":%q,"lastPublished":%q,"unpublishedAt":%q}`,
			ref.DirName(), ref.Name, ref.UID, now, now, now)
		files := map[string]string{
			filepath.Join(vdir, "volume.json"):                               string(vol),
			filepath.Join(vdir, "pods", ref.DirName()+".json"):               pd,
			filepath.Join(root, ref.DirName(), "app", "gc.log"):              strings.Repeat("gc pause 3ms\n", 80),
			filepath.Join(root, ref.DirName(), "app", "access.log"):          strings.Repeat("GET / 200\n", 100),
			filepath.Join(root, ref.DirName(), ".keeplog", "pod.txt"):        "namespace: team\n",
			filepath.Join(root, ref.DirName(), ".keeplog", "archive-status"): "{}",
		}
		for p, data := range files {
			if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS resets VmHWM to the current RSS (Linux >= 4.0).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS is VmHWM in KiB.
func peakRSS() (int64, bool) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			v, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return v, err == nil
		}
	}
	return 0, false
}
