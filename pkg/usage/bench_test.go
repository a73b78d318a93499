package usage

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

	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// BenchmarkWalk is one first, full, unpaced walk of a new usage tracker over 2,500, 5,000 and 10,000 retained pod
// directories, each owned by its own volume (one generic ephemeral volume per pod, a CronJob's week), each with a
// few files. Reported per walk: ns and allocations (Go's own), CPU seconds (user+sys of the process), MiB
// allocated, the heap in use after the walk (what the accounting keeps) and the volume evaluations it made. The
// cost must grow linearly: about 2x per doubling.
func BenchmarkWalk(b *testing.B) {
	for _, n := range []int{2500, 5000, 10000} {
		b.Run("dirs="+strconv.Itoa(n), func(b *testing.B) { benchWalk(b, n) })
	}
}

func benchWalk(b *testing.B, n int) {
	root := filepath.Join(b.TempDir(), "root")
	if err := writeRetainedDirs(root, n); err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(root, clock.RealClock{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var tr *Tracker
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		tr, err = New(Config{WalkRate: -1}, Deps{Store: st}) // a fresh tracker: every walk is a first walk
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		evals0 := tr.evaluations.Load()
		cpu0 := cpuTime()
		b.StartTimer()
		if err := tr.walkAll(ctx); err != nil {
			b.Fatal(err)
		}
		tr.evaluate()
		b.StopTimer()
		cpu := cpuTime() - cpu0
		runtime.ReadMemStats(&after)
		b.ReportMetric(cpu.Seconds(), "cpu-s/walk")
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/(1<<20), "MiB-alloc/walk")
		b.ReportMetric(float64(tr.evaluations.Load()-evals0), "evals/walk")
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse)/(1<<20), "MiB-heap-after")
		b.StartTimer()
	}
	b.StopTimer()
	tr.started = true
	if s, ok := tr.Status("v1:node-a:pvc-0"); !ok || s.Inodes != 7 {
		b.Fatalf("volume 0: %+v (tracked %v), want the 7 inodes written", s, ok)
	}
}

// writeRetainedDirs lays out n unpublished pod directories, one volume each, the way the store writes them
// (without its fsyncs, which would make the setup take minutes): 7 inodes per pod directory.
func writeRetainedDirs(root string, n int) error {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339Nano)
	for i := range n {
		ref := store.PodRef{Namespace: "team", Name: fmt.Sprintf("app-%d", i), UID: fmt.Sprintf("00000000-0000-0000-0000-%012d", i)}
		id := "v1:node-a:pvc-" + strconv.Itoa(i)
		vdir := filepath.Join(root, api.KeeplogDir, "volumes", id)
		pdir := filepath.Join(root, ref.DirName())
		for _, d := range []string{filepath.Join(vdir, "pods"), filepath.Join(vdir, "targets"),
			filepath.Join(pdir, "app"), filepath.Join(pdir, ".keeplog")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		vol, _ := json.Marshal(store.Volume{ID: id, Name: "pvc-" + strconv.Itoa(i), Kind: store.Persistent, Node: "node-a",
			CapacityBytes: 1 << 20, Parameters: map[string]string{"csi.storage.k8s.io/pvc/name": "x"}})
		pd := fmt.Sprintf(`{"dir":%q,"pod":{"namespace":"team","name":%q,"uid":%q},"firstPublished":%q,"lastPublished":%q,"unpublishedAt":%q}`,
			ref.DirName(), ref.Name, ref.UID, now, now, now)
		files := map[string]string{
			filepath.Join(vdir, "volume.json"):                 string(vol),
			filepath.Join(vdir, "pods", ref.DirName()+".json"): pd,
			filepath.Join(pdir, "app", "gc.log"):               strings.Repeat("gc pause 3ms\n", 80),
			filepath.Join(pdir, "app", "access.log"):           strings.Repeat("GET / 200\n", 100),
			filepath.Join(pdir, ".keeplog", "pod.txt"):         "namespace: team\n",
			filepath.Join(pdir, ".keeplog", "ended.txt"):       "Completed\n",
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
