//go:build soak

package soak

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/keeplog/keeplog/test/binary"
	"github.com/keeplog/keeplog/test/e2e/framework"
	"github.com/keeplog/keeplog/test/heapdumps"
)

// heapRun is one way of getting every dump onto the server.
type heapRun struct {
	wall, cpu           time.Duration
	raw, stored         int64
	loadStart, loadDone string
}

// BenchmarkHeapDumps is issue 14's benchmark in the seeds' load shape: KEEPLOG_HEAP_BENCH_COUNT real JVM heap
// dumps (default 25, 256 MiB - 1 GiB, test/heapdumps), each written by its own pod, all finished at once, one
// upload at a time at KEEPLOG_HEAP_BENCH_BANDWIDTH (default 25Mi, the seeds' sftp -l 204800). It times the seeds'
// recipe (sftp -l <kbit/s> -b with one put per dump, one after another) and bin/keeplog with
// --archive-node-uploads=1 raw and with archiveCompression: zstd, until the last dump is on the server; the
// cluster-wide slot (--archive-cluster-uploads=1) needs the API server, and one node with one node slot is the same
// shape: one upload at a time. Printed, never asserted: figures of a shared machine, with its load average.
func BenchmarkHeapDumps(b *testing.B) {
	count, bw := heapBenchShape(b)
	ctx := context.Background()
	dumps, err := heapdumps.GetAll(ctx, heapdumps.Specs(count), b.Logf)
	if err != nil {
		b.Fatal(err)
	}
	var raw, z3 int64
	for _, d := range dumps {
		raw, z3 = raw+d.Bytes, z3+d.Zstd3
	}
	b.Logf("%d real heap dumps, %.2f GiB, zstd -3 ratio %.2f overall; bandwidth %s/s, one upload at a time",
		len(dumps), float64(raw)/(1<<30), float64(raw)/float64(z3), resource.NewQuantity(bw, resource.BinarySI))
	res := map[string]heapRun{}
	b.Run("recipe", func(b *testing.B) { res["recipe"] = recipeRun(b, dumps, bw) })
	b.Run("keeplog-raw", func(b *testing.B) { res["keeplog-raw"] = keeplogRun(b, ctx, dumps, bw, nil) })
	b.Run("keeplog-zstd", func(b *testing.B) {
		res["keeplog-zstd"] = keeplogRun(b, ctx, dumps, bw, map[string]string{"archiveCompression": "zstd:3"})
	})
	// A parent benchmark's own log is not printed once it has sub-benchmarks: the comparison is one more.
	b.Run("summary", func(b *testing.B) { printHeapBench(b, res) })
}

func heapBenchShape(b *testing.B) (int, int64) {
	count := 25
	if v, err := strconv.Atoi(os.Getenv("KEEPLOG_HEAP_BENCH_COUNT")); err == nil && v > 0 {
		count = v
	}
	v := os.Getenv("KEEPLOG_HEAP_BENCH_BANDWIDTH")
	if v == "" {
		v = "25Mi"
	}
	q, err := resource.ParseQuantity(v)
	if err != nil {
		b.Fatalf("KEEPLOG_HEAP_BENCH_BANDWIDTH %q: %v", v, err)
	}
	return count, q.Value()
}

// recipeRun is the seeds' recipe: one sftp session putting each dump in turn at -l kbit/s (1 Kbit = 1024 bit,
// so 25Mi is 204800).
func recipeRun(b *testing.B, dumps []heapdumps.Dump, bw int64) heapRun {
	s := framework.StartSFTP(b)
	srv := s.Server
	var batch strings.Builder
	for i, d := range dumps {
		fmt.Fprintf(&batch, "put %s %s/recipe-%d.hprof\n", d.Path, srv.RemoteDir, i)
	}
	bf := filepath.Join(b.TempDir(), "batch")
	if err := os.WriteFile(bf, []byte(batch.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	defer removeServerData(b, srv.DataDir)
	kbit := strconv.FormatInt(bw*8/1024, 10)
	cmd := exec.Command("sftp", "-q", "-l", kbit, "-b", bf, "-i", srv.ClientKeyFile, "-P", strconv.Itoa(srv.Port),
		"-o", "UserKnownHostsFile="+srv.KnownHostsFile, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		srv.User+"@"+srv.Host)
	r := heapRun{loadStart: loadAvg()}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	r.wall, r.loadDone = time.Since(start), loadAvg()
	if err != nil {
		b.Fatalf("sftp -l %s -b: %v: %s", kbit, err, out)
	}
	r.cpu = binary.ChildCPU(cmd.ProcessState)
	for _, d := range dumps {
		r.raw += d.Bytes
	}
	r.stored = r.raw
	b.Logf("recipe (sftp -l %s -b put × %d): %s", kbit, len(dumps), r.wall.Round(time.Second))
	return r
}

// keeplogRun gives each dump its own pod (a hard link of the cached file, a copy across filesystems), finishes
// them all at once by unpublishing, and times bin/keeplog until the last one is on the server.
func keeplogRun(b *testing.B, ctx context.Context, dumps []heapdumps.Dump, bw int64, attrs map[string]string) heapRun {
	e := newArchEnv(b, ctx, "--archive-bandwidth="+resource.NewQuantity(bw, resource.BinarySI).String(), "--archive-node-uploads=1",
		"--archive-quiet-period=10m", "--retain-for=1h")
	defer removeServerData(b, e.sftp.Server.DataDir)
	published := make([]func() error, len(dumps))
	for i, d := range dumps {
		published[i] = e.publishWithDump(ctx, fmt.Sprintf("heap-%d", i), attrs, d.Path)
	}
	r := heapRun{loadStart: loadAvg()}
	cpu0, _ := binary.CPU(e.kl.Pid())
	start := time.Now()
	for _, unpublish := range published {
		if err := unpublish(); err != nil {
			b.Fatal(err)
		}
	}
	inv := e.waitArchived(ctx, len(dumps), 4*time.Hour)
	r.wall, r.loadDone = time.Since(start), loadAvg()
	cpu1, _ := binary.CPU(e.kl.Pid())
	r.cpu = cpu1 - cpu0
	for _, f := range inv.Files {
		r.raw, r.stored = r.raw+f.Manifest.Size, r.stored+f.Size
	}
	b.Logf("keeplog %v: %s, stored %.1f MiB of %.1f MiB", attrs, r.wall.Round(time.Second), float64(r.stored)/(1<<20),
		float64(r.raw)/(1<<20))
	return r
}

// publishWithDump publishes a new pod's inline volume and links (or copies) src into it as its dump; it returns
// the unpublish.
func (e *archEnv) publishWithDump(ctx context.Context, name string, attrs map[string]string, src string) func() error {
	e.t.Helper()
	pod := binary.NewPod("heap", name)
	vol := binary.EphemeralVolumeID(pod, "logs")
	target := filepath.Join(e.work, "targets", pod.UID, "mount")
	if err := e.csi.Publish(ctx, vol, target, pod, true, attrs); err != nil {
		e.t.Fatal(err)
	}
	dst := filepath.Join(target, dumpName(0))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		e.t.Fatal(err)
	}
	err := os.Link(src, dst)
	if errors.Is(err, syscall.EXDEV) {
		err = copyFile(src, dst)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return func() error {
		return binary.Retry(ctx, time.Minute, func(ctx context.Context) error { return e.csi.Unpublish(ctx, vol, target) })
	}
}

// removeServerData empties the server's data directory after a run, so that the next does not hold two copies of
// every dump on the disk.
func removeServerData(b testing.TB, dataDir string) {
	ents, _ := os.ReadDir(dataDir)
	for _, en := range ents {
		if err := os.RemoveAll(filepath.Join(dataDir, en.Name())); err != nil {
			b.Errorf("clean the server: %v", err)
		}
	}
}

// loadAvg is /proc/loadavg's three averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}
