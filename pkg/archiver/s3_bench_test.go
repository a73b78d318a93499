package archiver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/pkg/store"
)

// cpuSelf is this process's user+system CPU time so far.
func cpuSelf(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkS3UploadVsRclone uploads the same KEEPLOG_BENCH_SIZE file (256 MiB) to the same SeaweedFS bucket with the
// archiver (in this process: a fresh session, multipart in 8 MiB parts, every part's MD5 and sha256 computed and
// checked, the manifest, completion and its check) and with Debian's `rclone copyto`, interleaved for
// KEEPLOG_S3_BENCH_ROUNDS rounds (3), and prints wall time and client CPU of both and their ratios
// (keeplog/rclone: < 1 means keeplog took less). Printed, not asserted: the machine is shared.
func BenchmarkS3UploadVsRclone(b *testing.B) {
	if _, err := exec.LookPath("rclone"); err != nil {
		b.Fatalf("rclone is needed (Debian: rclone): %v", err)
	}
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("KEEPLOG_S3_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	e := newS3Env(b)
	tg := e.s3Target()
	size := benchSize(b)
	pod := e.pod("bench", "s3")
	rel := "app/bench.hprof"
	local := filepath.Join(e.root, pod, rel)
	writeRandom(b, local, size, 42)
	a, err := New(e.s3Config(tg), Deps{Root: e.root, StateDir: e.state, Dialer: e.s3Dialer(tg)})
	if err != nil {
		b.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(local, &st); err != nil {
		b.Fatal(err)
	}
	ref, _ := store.ParsePodDirName(pod)
	remote, _ := RemotePath(tg.BaseDir(), ref, rel)
	// One untimed upload first: SeaweedFS's first writes to a new bucket allocate its volumes (the first round was
	// twice as slow as the others).
	warm := exec.Command("rclone", "copyto", "--s3-no-check-bucket", local, "s3k:"+e.s3.Bucket+"/warm-up.bin")
	warm.Env = e.s3.RcloneEnv()
	if out, err := warm.CombinedOutput(); err != nil {
		b.Fatalf("rclone copyto: %v: %s", err, out)
	}
	var ourWall, ourCPU, theirWall, theirCPU time.Duration
	for range b.N {
		for i := range rounds {
			it := Item{ID: itemID(pod, rel, st.Ino, st.Size, st.Mtim.Nano()+int64(i)), PodDir: pod, Rel: rel, Container: "app",
				Ino: st.Ino, Size: st.Size, MtimeNs: st.Mtim.Nano(), Remote: fmt.Sprintf("%s.%d", remote, i)}
			c0, t0 := cpuSelf(b), time.Now()
			conn, err := a.dialer.Dial(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := a.upload(context.Background(), conn, &it); err != nil {
				b.Fatal(err)
			}
			_ = conn.Close()
			w, c := time.Since(t0), cpuSelf(b)-c0
			ourWall, ourCPU = ourWall+w, ourCPU+c

			cmd := exec.Command("rclone", "copyto", "--s3-no-check-bucket", local, fmt.Sprintf("s3k:%s/rclone/%d.bin", e.s3.Bucket, i))
			cmd.Env = e.s3.RcloneEnv()
			t1 := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("rclone copyto: %v: %s", err, out)
			}
			rw, rc := time.Since(t1), cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime()
			theirWall, theirCPU = theirWall+rw, theirCPU+rc
			b.Logf("round %d: keeplog %.2fs wall %.2fs CPU; rclone copyto %.2fs wall %.2fs CPU", i, w.Seconds(), c.Seconds(), rw.Seconds(), rc.Seconds())
		}
	}
	n := float64(b.N * rounds)
	mibps := func(d time.Duration) float64 { return float64(size) * n / d.Seconds() / (1 << 20) }
	fmt.Printf("BenchmarkS3UploadVsRclone: %d rounds of %d MiB to SeaweedFS on 127.0.0.1: keeplog %.1f MiB/s, %.2f CPU s/GiB; "+
		"rclone copyto %.1f MiB/s, %.2f CPU s/GiB; wall ratio keeplog/rclone %.2f, CPU ratio %.2f\n",
		int(n), size>>20, mibps(ourWall), ourCPU.Seconds()/(float64(size)*n/(1<<30)), mibps(theirWall),
		theirCPU.Seconds()/(float64(size)*n/(1<<30)), ourWall.Seconds()/theirWall.Seconds(), ourCPU.Seconds()/theirCPU.Seconds())
	b.ReportMetric(mibps(ourWall), "keeplog-MiB/s")
	b.ReportMetric(mibps(theirWall), "rclone-MiB/s")
	b.ReportMetric(ourWall.Seconds()/theirWall.Seconds(), "wall-ratio")
	b.ReportMetric(ourCPU.Seconds()/theirCPU.Seconds(), "cpu-ratio")
}
