//go:build soak

package soak

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/keeplog/keeplog/test/binary"
	"github.com/keeplog/keeplog/test/e2e/framework"
	"github.com/keeplog/keeplog/test/e2e/lab"
)

// run is one timed upload: wall time and the client's CPU, split into user and system time.
type run struct {
	wall  time.Duration
	times binary.Times
}

func (r run) cpu() time.Duration { return r.times.Total() }

func (r run) String() string {
	return fmt.Sprintf("%s (cpu %s: user %s, system %s)", r.wall.Round(time.Millisecond), r.cpu().Round(time.Millisecond),
		r.times.User.Round(time.Millisecond), r.times.Sys.Round(time.Millisecond))
}

// summary is a client's medians over its runs (the median CPU is not the sum of the median user and system times).
type summary struct {
	wall, cpu, user, sys time.Duration
}

func summarize(rs []run) summary {
	return summary{
		wall: medianOf(rs, func(r run) time.Duration { return r.wall }),
		cpu:  medianOf(rs, run.cpu),
		user: medianOf(rs, func(r run) time.Duration { return r.times.User }),
		sys:  medianOf(rs, func(r run) time.Duration { return r.times.Sys }),
	}
}

// BenchmarkBinaryUpload is issue 12's end-to-end upload bench: through bin/keeplog (a volume published over CSI,
// a dump written into it, the volume unpublished, until the final name exists on the server; keeplog's CPU from
// /proc over that period), interleaved with OpenSSH sftp -b put of the same file to the same sshd, with the default
// cipher and with aes128-gcm@openssh.com (what keeplog negotiates), KEEPLOG_BINARY_BENCH_PAIRS rounds (default 3)
// of a KEEPLOG_BINARY_BENCH_SIZE file (default 1Gi). KEEPLOG_BINARY_BENCH_DELAY (a duration, "10ms") puts a proxy
// between the clients and sshd that delays each direction by that much: a longer link than loopback, for every
// client alike. Printed, never asserted: a shared machine is slower.
func BenchmarkBinaryUpload(b *testing.B) {
	size := benchSize(b)
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("KEEPLOG_BINARY_BENCH_PAIRS")); err == nil && v > 0 {
		rounds = v
	}
	sftp := framework.StartSFTP(b)
	dest := endpoint{port: sftp.Server.Port, knownHosts: sftp.Server.KnownHostsFile}
	if v := os.Getenv("KEEPLOG_BINARY_BENCH_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("KEEPLOG_BINARY_BENCH_DELAY %q: not a positive duration", v)
		}
		dest.port = startDelayProxy(b, sftp.Server.Host, sftp.Server.Port, d)
		dest.knownHosts = sftp.Through(b, dest.port)
		b.Logf("each direction delayed by %s (a round trip of %s) through 127.0.0.1:%d", d, 2*d, dest.port)
	}
	work := b.TempDir()
	b.Cleanup(func() { unmountUnder(b, work) }) // after a failed round; runs before the removal of work
	ctx := context.Background()
	kl, err := binary.StartKeeplog(ctx, binary.Config{WorkDir: filepath.Join(work, "keeplog"), ArchiveTarget: sftp.TargetDir,
		Args: []string{"--archive-quiet-period=10m", "--retain-for=1h"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = kl.Stop() })
	c, err := binary.DialCSI(kl.Socket)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	res := map[string][]run{}
	for i := 0; i < b.N*rounds; i++ {
		for name, r := range benchRound(b, ctx, kl, c, sftp, dest, work, i, size) {
			res[name] = append(res[name], r)
		}
	}
	printBench(b, res, size)
}

func benchSize(b *testing.B) int64 {
	v := os.Getenv("KEEPLOG_BINARY_BENCH_SIZE")
	if v == "" {
		v = "1Gi"
	}
	q, err := resource.ParseQuantity(v)
	if err != nil {
		b.Fatalf("KEEPLOG_BINARY_BENCH_SIZE %q: %v", v, err)
	}
	return q.Value()
}

// benchRound publishes a pod, writes the dump, puts it with both sftp variants, then unpublishes and times keeplog's
// upload; the server's copies are removed afterwards.
func benchRound(b *testing.B, ctx context.Context, kl *binary.Keeplog, c *binary.CSI, sftp *framework.SFTP, dest endpoint, work string, i int, size int64) map[string]run {
	pod := binary.NewPod("bench", fmt.Sprintf("bench-%d", i))
	vol := binary.EphemeralVolumeID(pod, "logs")
	target := filepath.Join(work, "targets", pod.UID, "mount")
	if err := c.Publish(ctx, vol, target, pod, true, nil); err != nil {
		b.Fatal(err)
	}
	rel := "app/java_pid1.hprof"
	local := filepath.Join(target, rel)
	if _, err := binary.WriteFile(local, size, uint64(i)); err != nil {
		b.Fatal(err)
	}
	out := map[string]run{}
	out["sftp"] = sftpPut(b, sftp, dest, local, nil)
	out["sftp-aes128-gcm"] = sftpPut(b, sftp, dest, local, []string{"-c", "aes128-gcm@openssh.com"})
	out["sha256"] = sha256Of(b, local) // what keeplog does beside sftp's work: the digest its manifest and verify need
	final := sftp.Archived(b, pod.Ref(), rel)
	cpu0, _ := binary.ProcTimes(kl.Pid())
	start := time.Now()
	if err := c.Unpublish(ctx, vol, target); err != nil {
		b.Fatal(err)
	}
	for {
		if _, err := os.Stat(final); err == nil {
			break
		}
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("keeplog did not upload %s within 10 minutes; its log:\n%s", rel, kl.LogTail(30))
		}
		time.Sleep(10 * time.Millisecond)
	}
	wall := time.Since(start)
	cpu1, _ := binary.ProcTimes(kl.Pid())
	out["keeplog"] = run{wall: wall, times: cpu1.Sub(cpu0)}
	b.Logf("round %d: keeplog %s, sftp %s, sftp aes128-gcm %s, openssl sha256 %s", i+1, out["keeplog"], out["sftp"],
		out["sftp-aes128-gcm"], out["sha256"])
	_ = os.RemoveAll(filepath.Join(sftp.Server.DataDir, "archive"))
	return out
}

// endpoint is where the sftp clients connect: sshd itself, or the delay proxy in front of it.
type endpoint struct {
	port       int
	knownHosts string
}

// sftpPut runs OpenSSH's sftp in batch mode; CPU is sftp's and its ssh child's, from rusage.
func sftpPut(b *testing.B, s *framework.SFTP, dest endpoint, local string, extra []string) run {
	srv := s.Server
	batch := filepath.Join(b.TempDir(), "batch")
	name := "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	defer os.Remove(filepath.Join(srv.DataDir, name)) // on the server's disk: an rm in the batch would be timed
	if err := os.WriteFile(batch, []byte(fmt.Sprintf("put %s %s/%s\n", local, srv.RemoteDir, name)), 0o600); err != nil {
		b.Fatal(err)
	}
	args := append([]string{"-q", "-b", batch, "-i", srv.ClientKeyFile, "-P", strconv.Itoa(dest.port),
		"-o", "UserKnownHostsFile=" + dest.knownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"}, extra...)
	cmd := exec.Command("sftp", append(args, srv.User+"@"+srv.Host)...)
	start := time.Now()
	outb, err := cmd.CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		b.Fatalf("sftp %s: %v: %s", strings.Join(extra, " "), err, outb)
	}
	return run{wall: wall, times: binary.ChildTimes(cmd.ProcessState)}
}

// sha256Of runs `openssl dgst -sha256` over the file: the reference for the part of keeplog's CPU that sftp does not
// spend (keeplog hashes every byte it sends, for the manifest and the verification). OpenSSL uses the CPU's SHA
// instructions as Go does; coreutils' sha256sum does not (4.3 against 0.9 cpu-s per GiB here), so it would flatter
// keeplog.
func sha256Of(b *testing.B, local string) run {
	cmd := exec.Command("openssl", "dgst", "-sha256", local)
	start := time.Now()
	outb, err := cmd.CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		b.Fatalf("openssl dgst -sha256 %s: %v: %s", local, err, outb)
	}
	return run{wall: wall, times: binary.ChildTimes(cmd.ProcessState)}
}

// printBench prints each client's median and keeplog's ratios to the two sftp variants, and its CPU against
// `sftp -c aes128-gcm` plus `openssl dgst -sha256` of the same file (sftp's work and the digest keeplog computes besides).
func printBench(b *testing.B, res map[string][]run, size int64) {
	med := map[string]summary{}
	for name, rs := range res {
		med[name] = summarize(rs)
	}
	mib := float64(size) / (1 << 20)
	for _, name := range []string{"keeplog", "sftp", "sftp-aes128-gcm", "sha256"} {
		m := med[name]
		b.Logf("%-16s median of %d: wall %s (%.0f MiB/s), client CPU %s (medians: user %s, system %s)", name, len(res[name]),
			m.wall.Round(time.Millisecond), mib/m.wall.Seconds(), m.cpu.Round(time.Millisecond),
			m.user.Round(time.Millisecond), m.sys.Round(time.Millisecond))
	}
	for _, other := range []string{"sftp", "sftp-aes128-gcm"} {
		wr := med["keeplog"].wall.Seconds() / med[other].wall.Seconds()
		cr := med["keeplog"].cpu.Seconds() / med[other].cpu.Seconds()
		b.Logf("keeplog / %-16s wall %.2f×, client CPU %.2f×", other, wr, cr)
		b.ReportMetric(wr, "wall-x-"+other)
		b.ReportMetric(cr, "cpu-x-"+other)
	}
	both := med["sftp-aes128-gcm"].cpu + med["sha256"].cpu
	cr := med["keeplog"].cpu.Seconds() / both.Seconds()
	b.Logf("keeplog / sftp-aes128-gcm + openssl sha256: client CPU %.2f× (%s + %s)", cr, med["sftp-aes128-gcm"].cpu.Round(time.Millisecond),
		med["sha256"].cpu.Round(time.Millisecond))
	b.ReportMetric(cr, "cpu-x-sftp-aes128-gcm+sha256")
}

// unmountUnder unmounts what a failed round left published, so that the removal of the work directory does not
// go through a bind mount.
func unmountUnder(b testing.TB, dir string) {
	mounts, err := lab.MountsUnder(dir)
	if err != nil {
		b.Errorf("mounts under %s: %v", dir, err)
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], 0); err != nil {
			b.Errorf("unmount %s: %v", mounts[i], err)
		}
	}
}

func medianOf(rs []run, f func(run) time.Duration) time.Duration {
	d := make([]time.Duration, len(rs))
	for i, r := range rs {
		d[i] = f(r)
	}
	slices.Sort(d)
	return d[len(d)/2]
}
