//go:build soak

package soak

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"time"

	"github.com/keeplog/keeplog/test/binary"
)

// idleFigures are what keeplog did in the idle window at the end.
type idleFigures struct {
	window time.Duration
	cpu    time.Duration // utime+stime of the keeplog PID over the window
	rss    int64

	// statusWrites is the rise of keeplog_archive_status_writes_total, or (without the metric) the changes of the
	// status files seen by polling; statusFiles how many status files existed.
	statusWrites  float64
	statusFrom    string
	statusFiles   int
	overflows     float64 // keeplog_archive_watch_overflows_total's rise, or overflow lines logged (without it)
	overflowsFrom string
	logLines      int // lines keeplog logged in the window
	restartedIn   bool
}

// measureIdle watches keeplog do nothing for plan.idle.
func (s *soakEnv) measureIdle(ctx context.Context) idleFigures {
	f := idleFigures{window: s.plan.idle}
	pid := s.kl.Pid()
	before, _ := binary.Scrape(ctx, s.kl.HTTPAddr)
	logStart := fileSize(s.kl.LogPath)
	cpu0, err := binary.CPU(pid)
	if err != nil {
		s.t.Fatalf("cpu of keeplog: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, s.plan.idle)
	changes, files := s.watchStatusFiles(wctx)
	cancel()
	cpu1, err := binary.CPU(pid)
	if err != nil {
		s.t.Fatalf("cpu of keeplog at the end of idle (did it exit?): %v\n%s", err, s.kl.LogTail(30))
	}
	f.cpu = cpu1 - cpu0
	f.rss, _ = binary.RSS(pid)
	f.restartedIn = s.kl.Pid() != pid
	after, _ := binary.Scrape(ctx, s.kl.HTTPAddr)
	logged := readFrom(s.kl.LogPath, logStart)
	f.logLines = bytes.Count(logged, []byte("\n"))
	f.statusFiles = files
	f.statusWrites, f.statusFrom = float64(changes), "status files polled every 50 ms (changes seen)"
	if d, ok := delta(before, after, binary.MetricStatusWrites); ok {
		f.statusWrites, f.statusFrom = d, binary.MetricStatusWrites
	}
	f.overflows = float64(bytes.Count(bytes.ToLower(logged), []byte("overflow")))
	f.overflowsFrom = "log lines mentioning an overflow"
	if d, ok := delta(before, after, binary.MetricWatchOverflows); ok {
		f.overflows, f.overflowsFrom = d, binary.MetricWatchOverflows
	}
	return f
}

func delta(before, after binary.Samples, name string) (float64, bool) {
	b, ok1 := before.Sum(name)
	a, ok2 := after.Sum(name)
	return a - b, ok1 && ok2
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

func readFrom(p string, off int64) []byte {
	b, err := os.ReadFile(p)
	if err != nil || off > int64(len(b)) {
		return nil
	}
	return b[off:]
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }
