//go:build soak

package soak

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keeplog/keeplog/internal/fstest"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/test/binary"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

// scalePlan is what BenchmarkBinaryScale measures, from the environment.
type scalePlan struct {
	sizes   []int         // KEEPLOG_SCALE_SIZES, retained pod directories per root (default 2500,5000,10000,20000)
	idle    time.Duration // KEEPLOG_SCALE_IDLE, the idle window after the first walk and GC pass (default 5m)
	archive []bool        // KEEPLOG_SCALE_ARCHIVE: off, on, or off,on (default): archiving to a local OpenSSH
	live    int           // KEEPLOG_SCALE_LIVE, published volumes being written (default 100)
}

func scalePlanFromEnv(b *testing.B) scalePlan {
	p := scalePlan{sizes: []int{2500, 5000, 10000, 20000}, idle: 5 * time.Minute, archive: []bool{false, true}, live: 100}
	if v := os.Getenv("KEEPLOG_SCALE_SIZES"); v != "" {
		p.sizes = nil
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n <= 0 {
				b.Fatalf("KEEPLOG_SCALE_SIZES %q: %q is not a positive number", v, s)
			}
			p.sizes = append(p.sizes, n)
		}
	}
	if v := os.Getenv("KEEPLOG_SCALE_IDLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("KEEPLOG_SCALE_IDLE %q: %v", v, err)
		}
		p.idle = d
	}
	if v := os.Getenv("KEEPLOG_SCALE_ARCHIVE"); v != "" {
		p.archive = nil
		for _, s := range strings.Split(v, ",") {
			if s != "on" && s != "off" {
				b.Fatalf("KEEPLOG_SCALE_ARCHIVE %q: each value is on or off", v)
			}
			p.archive = append(p.archive, s == "on")
		}
	}
	if v, err := strconv.Atoi(os.Getenv("KEEPLOG_SCALE_LIVE")); err == nil && v >= 0 {
		p.live = v
	}
	return p
}

// scaleFigures are one run's results.
type scaleFigures struct {
	size    int
	archive bool
	// walkWall and walkCPU: from the process's start until its first usage walk ended (keeplog_usage_walks_total
	// reached 1), and the process's CPU by then (the start and the GC's first pass included, which run alongside);
	// walkSum is keeplog_usage_walk_duration_seconds_sum then (the walk's own time, its pacing included).
	walkWall, walkCPU time.Duration
	walkSum           float64
	// gcWall and gcCPU: the same until the GC's first pass ended (keeplog_gc_retained_directories set).
	gcWall, gcCPU time.Duration
	idleWindow    time.Duration // plan.idle, in two halves
	idleCPU       time.Duration // over the first half, the live pods writing
	quietCPU      time.Duration // over the second half, nothing written
	idleWalks     float64       // usage walks during the idle window
	rss           int64
	watches       int
	load          string
	at            time.Time
}

// BenchmarkBinaryScale is issue 13's benchmark through bin/keeplog: for each size, a root of that many retained pod
// directories (made through CSI once and cached, see retainedRoot; each run measures a copy), plus plan.live
// published volumes being written; keeplog is killed and started again on it, as after a crash or an upgrade, and
// the first usage walk, the first GC pass, CPU over an idle window and RSS are printed, with the growth per doubling
// of the size. Printed, never asserted: the machine is shared, so the load average is printed with each figure.
func BenchmarkBinaryScale(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("must run as root (keeplog bind-mounts)")
	}
	plan := scalePlanFromEnv(b)
	var sftp *framework.SFTP
	for _, on := range plan.archive {
		if on && sftp == nil {
			sftp = framework.StartSFTP(b)
		}
	}
	b.Logf("%s: sizes %v, idle %s, %d live volumes, archive %v", time.Now().Format(time.RFC3339), plan.sizes, plan.idle, plan.live, plan.archive)
	var all []scaleFigures
	for range b.N {
		for _, size := range plan.sizes {
			cached := retainedRoot(b, size)
			for _, on := range plan.archive {
				f := measureScale(b, plan, cached, size, sftp, on)
				b.Log(f.String())
				all = append(all, f)
			}
		}
	}
	printGrowth(b, all)
}

// measureScale runs keeplog on a copy of the cached root and measures it.
func measureScale(b *testing.B, plan scalePlan, cached string, size int, sftp *framework.SFTP, archive bool) scaleFigures {
	ctx := context.Background()
	work, err := os.MkdirTemp("/var/tmp", "keeplog-scale-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(work)
	defer unmountUnder(b, work) // before the removal: never through a bind mount
	copyRoot(b, cached, filepath.Join(work, "root"))
	cfg := binary.Config{WorkDir: work, Args: []string{"--retain-for=720h"}, ReadyTimeout: 10 * time.Minute}
	if archive {
		cfg.ArchiveTarget = sftp.TargetDir
	}
	kl, err := binary.StartKeeplog(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = kl.Stop() }()
	c, err := binary.DialCSI(kl.Socket)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	live := startLivePods(b, ctx, c, work, plan.live)
	defer live.end(b, ctx)
	if archive {
		// The node as it is after its archiver has seen each retained directory once (their walked marks are in
		// the journal): what every restart but the first after the upgrade to walked marks finds.
		waitWalkedMarks(b, kl, filepath.Join(work, "root"), size)
	}
	if err := kl.Kill(); err != nil { // the pods keep running and writing; keeplog restarts on the full root
		b.Fatal(err)
	}
	start := time.Now()
	if err := kl.Start(ctx); err != nil {
		b.Fatal(err)
	}
	f := scaleFigures{size: size, archive: archive}
	waitFirsts(b, ctx, kl, start, &f)
	measureIdleScale(b, ctx, kl, live, plan.idle, &f)
	return f
}

// waitWalkedMarks waits (at most 10 minutes) until the archiver's journal marks every retained pod directory walked.
func waitWalkedMarks(b *testing.B, kl *binary.Keeplog, root string, size int) {
	dir := filepath.Join(root, api.KeeplogDir, api.ArchiveJournalDir, api.ArchiveWalkedDir)
	start := time.Now()
	for {
		ents, err := os.ReadDir(dir)
		if err == nil && len(ents) >= size {
			return
		}
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("%d of %d retained pod directories marked walked after 10 minutes (%v); log:\n%s", len(ents), size, err, kl.LogTail(30))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitFirsts polls /metrics until the first usage walk and the first GC pass have ended (at most 15 minutes).
func waitFirsts(b *testing.B, ctx context.Context, kl *binary.Keeplog, start time.Time, f *scaleFigures) {
	walkDone, gcDone := false, false
	for !walkDone || !gcDone {
		if time.Since(start) > 15*time.Minute {
			b.Fatalf("%d directories: first walk %v, first GC pass %v after 15 minutes; log:\n%s", f.size, walkDone, gcDone, kl.LogTail(30))
		}
		time.Sleep(100 * time.Millisecond)
		s, err := binary.Scrape(ctx, kl.HTTPAddr)
		if err != nil {
			continue
		}
		cpu, _ := binary.CPU(kl.Pid())
		if w, _ := s.Sum("keeplog_usage_walks_total"); !walkDone && w >= 1 {
			walkDone, f.walkWall, f.walkCPU = true, time.Since(start), cpu
			f.walkSum = s["keeplog_usage_walk_duration_seconds_sum"]
		}
		if r, _ := s.Sum("keeplog_gc_retained_directories"); !gcDone && r >= float64(f.size) {
			gcDone, f.gcWall, f.gcCPU = true, time.Since(start), cpu
		}
	}
}

// measureIdleScale takes keeplog's CPU over the idle window: its first half with the live pods writing, its second
// with nothing written (what retained directories alone cost); then its RSS and watches.
func measureIdleScale(b *testing.B, ctx context.Context, kl *binary.Keeplog, live *livePods, idle time.Duration, f *scaleFigures) {
	before, _ := binary.Scrape(ctx, kl.HTTPAddr)
	cpu := func() time.Duration {
		c, err := binary.CPU(kl.Pid())
		if err != nil {
			b.Fatalf("keeplog exited during the idle window: %v\n%s", err, kl.LogTail(30))
		}
		return c
	}
	cpu0 := cpu()
	time.Sleep(idle / 2)
	live.paused.Store(true)
	cpu1 := cpu()
	time.Sleep(idle / 2)
	cpu2 := cpu()
	live.paused.Store(false)
	after, _ := binary.Scrape(ctx, kl.HTTPAddr)
	f.idleCPU, f.quietCPU = cpu1-cpu0, cpu2-cpu1
	f.idleWalks, _ = delta(before, after, "keeplog_usage_walks_total")
	f.rss, _ = binary.RSS(kl.Pid())
	f.watches, _ = fstest.InotifyWatches(kl.Pid())
	f.load, f.at = binary.LoadAvg(), time.Now()
	f.idleWindow = idle
}

// idlePercent and quietPercent are the two halves' CPU as a share of one core.
func (f scaleFigures) idlePercent() float64 {
	return 200 * f.idleCPU.Seconds() / f.idleWindow.Seconds()
}

func (f scaleFigures) quietPercent() float64 {
	return 200 * f.quietCPU.Seconds() / f.idleWindow.Seconds()
}

func (f scaleFigures) String() string {
	arch := "off"
	if f.archive {
		arch = "on"
	}
	return fmt.Sprintf("%s %6d retained dirs, archive %-3s: first usage walk %s wall, %.2f cpu-s (walk's own %.2fs); "+
		"first GC pass %s wall, %.2f cpu-s; idle %s: %.2f%% of a core with the live pods writing, %.2f%% with nothing "+
		"written (%g walks); RSS %.1f MiB; "+
		"inotify watches %d; load %s",
		f.at.Format("2006-01-02 15:04"), f.size, arch, f.walkWall.Round(10*time.Millisecond), f.walkCPU.Seconds(), f.walkSum,
		f.gcWall.Round(10*time.Millisecond), f.gcCPU.Seconds(), f.idleWindow, f.idlePercent(), f.quietPercent(),
		f.idleWalks, float64(f.rss)/(1<<20), f.watches, f.load)
}

// printGrowth prints, for each doubling of the size (same archive setting), how much each cost grew, and the
// targets at 10,000 directories: growth ≤ 2.2× per doubling, idle CPU ≤ 1 % of a core, RSS ≤ 80 MiB.
func printGrowth(b *testing.B, all []scaleFigures) {
	for i, hi := range all {
		for _, lo := range all[:i] {
			if lo.archive != hi.archive || hi.size != 2*lo.size {
				continue
			}
			b.Logf("growth %d→%d (archive %v): first walk cpu %.2f×, first GC pass cpu %.2f×, idle cpu %.2f× (writing) %.2f× (nothing written), RSS %.2f× (target ≤ 2.2×)",
				lo.size, hi.size, hi.archive, ratio(hi.walkCPU.Seconds(), lo.walkCPU.Seconds()),
				ratio(hi.gcCPU.Seconds(), lo.gcCPU.Seconds()), ratio(hi.idleCPU.Seconds(), lo.idleCPU.Seconds()),
				ratio(hi.quietCPU.Seconds(), lo.quietCPU.Seconds()), ratio(float64(hi.rss), float64(lo.rss)))
		}
		if hi.size == 10000 {
			b.Logf("at 10000 (archive %v): idle CPU %.2f%% of a core with 100 pods writing, %.2f%% with nothing written (target ≤ 1%%: %s, %s), RSS %.1f MiB (target ≤ 80: %s)",
				hi.archive, hi.idlePercent(), hi.quietPercent(), metOrMissed(hi.idlePercent() <= 1), metOrMissed(hi.quietPercent() <= 1),
				float64(hi.rss)/(1<<20), metOrMissed(hi.rss <= 80<<20))
		}
	}
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

func metOrMissed(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}
