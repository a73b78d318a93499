package binary

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Metric names the harness reads. The counters are read when keeplog has them; callers fall back to observing files
// when they are absent (today's code).
const (
	MetricLoopProgress   = "keeplog_loop_last_progress_seconds"
	MetricStatusWrites   = "keeplog_archive_status_writes_total"
	MetricWatchOverflows = "keeplog_archive_watch_overflows_total"
)

// Samples are one scrape: "name{labels}" (labels as keeplog printed them) → value.
type Samples map[string]float64

// Sum adds every series of a metric; ok is false when the metric is absent.
func (s Samples) Sum(name string) (sum float64, ok bool) {
	for k, v := range s {
		if k == name || strings.HasPrefix(k, name+"{") {
			sum += v
			ok = true
		}
	}
	return sum, ok
}

// Series returns every series of a metric by its label text.
func (s Samples) Series(name string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range s {
		if strings.HasPrefix(k, name+"{") {
			out[strings.TrimPrefix(k, name)] = v
		} else if k == name {
			out[""] = v
		}
	}
	return out
}

// Scrape reads /metrics (Prometheus text format; comments skipped, histograms kept as their series).
func Scrape(ctx context.Context, addr string) (Samples, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	return parseText(resp.Body)
}

func parseText(r io.Reader) (Samples, error) {
	out := Samples{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// Health polls /healthz every second and /metrics every 5 seconds while keeplog is meant to be up, counting
// failed answers and the oldest progress of each loop (keeplog_loop_last_progress_seconds, when keeplog has it).
// Pause it around a deliberate kill: a process that is down is not a stalled loop.
type Health struct {
	addr string

	mu       sync.Mutex
	paused   bool
	polls    int
	failures []string
	maxAge   map[string]float64 // loop label → the largest age seen
	hasLoops bool
}

// NewHealth makes a poller for keeplog's HTTP address; Run starts it.
func NewHealth(addr string) *Health { return &Health{addr: addr, maxAge: map[string]float64{}} }

// Pause stops counting (keeplog is being killed).
func (h *Health) Pause() { h.set(true) }

// Resume counts again (keeplog is ready after a restart).
func (h *Health) Resume() { h.set(false) }

func (h *Health) set(p bool) {
	h.mu.Lock()
	h.paused = p
	h.mu.Unlock()
}

// Run polls until ctx ends.
func (h *Health) Run(ctx context.Context) {
	hc := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		h.pollHealthz(ctx, hc)
		if n%5 == 0 {
			h.pollLoops(ctx)
		}
	}
}

func (h *Health) pollHealthz(ctx context.Context, hc *http.Client) {
	if h.isPaused() {
		return
	}
	msg := ""
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.addr+"/healthz", nil)
	resp, err := hc.Do(req)
	if err != nil {
		msg = err.Error()
	} else {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			msg = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.paused || ctx.Err() != nil { // paused while the request was under way
		return
	}
	h.polls++
	if msg != "" {
		h.failures = append(h.failures, time.Now().Format("15:04:05 ")+msg)
	}
}

func (h *Health) pollLoops(ctx context.Context) {
	if h.isPaused() {
		return
	}
	s, err := Scrape(ctx, h.addr)
	if err != nil {
		return // /healthz counts an unreachable keeplog
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for loop, age := range s.Series(MetricLoopProgress) {
		h.hasLoops = true
		h.maxAge[loop] = max(h.maxAge[loop], age)
	}
}

func (h *Health) isPaused() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.paused
}

// HealthReport is what the poller saw.
type HealthReport struct {
	Polls    int
	Failures []string
	// HasLoops is false when keeplog does not export the loop progress metric.
	HasLoops bool
	// MaxAge is each loop's oldest progress seen, in seconds.
	MaxAge map[string]float64
}

// Report returns a copy of what was seen so far.
func (h *Health) Report() HealthReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := HealthReport{Polls: h.polls, Failures: append([]string(nil), h.failures...), HasLoops: h.hasLoops,
		MaxAge: map[string]float64{}}
	for k, v := range h.maxAge {
		r.MaxAge[k] = v
	}
	return r
}
