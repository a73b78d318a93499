package archiver

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/pkg/store"
)

// benchSize is KEEPLOG_BENCH_SIZE bytes (suffixes K, M, G allowed), 256 MiB
// by default.
func benchSize(b *testing.B) int64 {
	s := os.Getenv("KEEPLOG_BENCH_SIZE")
	if s == "" {
		return 256 << 20
	}
	mult := int64(1)
	switch s[len(s)-1] {
	case 'K', 'k':
		mult, s = 1<<10, s[:len(s)-1]
	case 'M', 'm':
		mult, s = 1<<20, s[:len(s)-1]
	case 'G', 'g':
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		b.Fatalf("KEEPLOG_BENCH_SIZE=%q: want a positive size like 2G", os.Getenv("KEEPLOG_BENCH_SIZE"))
	}
	return n * mult
}

// benchArchiver builds an archiver over one pod with one file and returns
// a function that uploads it once (a fresh connection each time, as in
// production after an idle period) and its duration.
func benchArchiver(b *testing.B, e *env, size, bytesPerSecond int64) (upload func() time.Duration, local string) {
	pod := e.pod("bench", "app")
	rel := "app/bench.hprof"
	local = filepath.Join(e.root, pod, rel)
	writeRandom(b, local, size, 42)
	cfg := e.config()
	cfg.BytesPerSecond = bytesPerSecond
	a, err := New(cfg, Deps{Root: e.root, StateDir: e.state, Dialer: e.dialer(cfg.Target)})
	if err != nil {
		b.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(local, &st); err != nil {
		b.Fatal(err)
	}
	ref, _ := store.ParsePodDirName(pod)
	remote, _ := RemotePath(cfg.Target.BaseDir, ref, rel)
	n := 0
	return func() time.Duration {
		n++
		it := Item{ID: itemID(pod, rel, st.Ino, st.Size, st.Mtim.Nano()+int64(n)), PodDir: pod, Rel: rel, Container: "app",
			Ino: st.Ino, Size: st.Size, MtimeNs: st.Mtim.Nano(), Remote: remote}
		start := time.Now()
		conn, err := a.dialer.Dial(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		if _, err := a.upload(context.Background(), conn, &it); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}, local
}

// sftpPut uploads with OpenSSH's sftp client in batch mode.
func sftpPut(b *testing.B, e *env, local, remote string) time.Duration {
	batch := filepath.Join(b.TempDir(), "batch")
	if err := os.WriteFile(batch, []byte("put "+local+" "+remote+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command("sftp", "-b", batch, "-i", e.srv.ClientKeyFile, "-P", strconv.Itoa(e.srv.Port),
		"-o", "UserKnownHostsFile="+e.srv.KnownHostsFile, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-o", "GlobalKnownHostsFile=/dev/null", e.srv.User+"@"+e.srv.Host)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("sftp put: %v: %s", err, out)
	}
	return time.Since(start)
}

// BenchmarkUploadVsSFTPClient uploads the same file with the archiver and
// with OpenSSH's sftp put to the same sshd and reports both rates and their
// ratio (archiver/sftp; > 1 means the archiver is faster).
func BenchmarkUploadVsSFTPClient(b *testing.B) {
	if _, err := exec.LookPath("sftp"); err != nil {
		b.Fatalf("the OpenSSH sftp client is needed (Debian: openssh-client): %v", err)
	}
	e := newEnv(b)
	size := benchSize(b)
	upload, local := benchArchiver(b, e, size, 0)
	b.SetBytes(size)
	b.ResetTimer()
	var ours, theirs time.Duration
	for i := 0; i < b.N; i++ {
		ours += upload()
		b.StopTimer()
		theirs += sftpPut(b, e, local, e.srv.RemoteDir+"/sftp-put.bin")
		_ = os.Remove(filepath.Join(e.srv.DataDir, "sftp-put.bin"))
		b.StartTimer()
	}
	mibps := func(d time.Duration) float64 { return float64(size) * float64(b.N) / d.Seconds() / (1 << 20) }
	b.ReportMetric(mibps(ours), "archiver-MiB/s")
	b.ReportMetric(mibps(theirs), "sftp-MiB/s")
	b.ReportMetric(theirs.Seconds()/ours.Seconds(), "ratio")
}

// BenchmarkUploadRateLimited reports the rate achieved with a limit
// (KEEPLOG_BENCH_LIMIT bytes/s, default 100 MiB/s).
func BenchmarkUploadRateLimited(b *testing.B) {
	limit := int64(100 << 20)
	if s := os.Getenv("KEEPLOG_BENCH_LIMIT"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v <= 0 {
			b.Fatalf("KEEPLOG_BENCH_LIMIT=%q: want bytes per second", s)
		}
		limit = v
	}
	e := newEnv(b)
	size := benchSize(b)
	upload, _ := benchArchiver(b, e, size, limit)
	b.SetBytes(size)
	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		total += upload()
	}
	achieved := float64(size) * float64(b.N) / total.Seconds()
	b.ReportMetric(achieved/(1<<20), "achieved-MiB/s")
	b.ReportMetric(float64(limit)/(1<<20), "limit-MiB/s")
	b.ReportMetric(achieved/float64(limit), "achieved/limit")
}
