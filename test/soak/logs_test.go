//go:build soak

package soak

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"time"
)

// The soak runs keeplog as the chart does by default, --log-format=json --v=2: --v governs every logger, so no
// V(3)+ line, no request or response body, no hex dump and no key material reaches the log, and the log stays
// small enough that kubelet's rotation keeps what a user needs.
var logArgs = []string{"--log-format=json", "--v=2"}

const logVerbosity = 2

// maxLogPerMinute bounds what keeplog logs in any one minute of the soak, and maxLogPerPod what it logs per pod
// over the run. Pods come and go every few seconds and every publish, upload and deletion is logged at V(0)-V(2):
// about 4 KiB a pod, 180 KiB a minute with the short soak's three workers and 410 KiB with the long one's four on
// a loaded 2-core machine (a faster one runs more pods a minute, hence the per-pod bound beside a loose per-minute
// one). The bodies of issue 12 were 2 MB a minute.
const (
	maxLogPerMinute = 1 << 20
	maxLogPerPod    = 8 << 10
)

// bodyLike are what client-go's request logging (V(6)-V(9)) and a hex dump of a body look like, and key material.
var bodyLike = regexp.MustCompile(`Response Body|Request Body|curl -v|HTTP Trace|` +
	`(?:[0-9a-f]{2} ){16}|[0-9a-fA-F]{200}|PRIVATE KEY|BEGIN OPENSSH`)

// logFigures are what keeplog's log holds over the whole run.
type logFigures struct {
	lines, bytes   int
	notJSON        []string
	tooVerbose     []string // lines above --v
	bodies         []string // lines that look like a body, a hex dump or a key
	maxMinute      int      // the most bytes logged in one wall-clock minute
	maxMinuteAt    string
	minutes        int
	noTimeOrLevels int
	starts         int
}

func clipLine(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// readLog looks at every line of keeplog's log (every start appends to it).
func readLog(all []byte) logFigures {
	var f logFigures
	perMinute := map[string]int{}
	for _, line := range bytes.Split(all, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if bytes.HasPrefix(line, []byte("=== ")) { // the harness's line before each start (lab.StartProcess)
			f.starts++
			continue
		}
		f.lines++
		f.bytes += len(line) + 1
		if bodyLike.Match(line) {
			f.bodies = append(f.bodies, clipLine(line))
		}
		var rec struct {
			Time  time.Time
			Level slog.Level // V(n) is level -n
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			f.notJSON = append(f.notJSON, clipLine(line))
			continue
		}
		if rec.Time.IsZero() {
			f.noTimeOrLevels++
			continue
		}
		if rec.Level < slog.Level(-logVerbosity) {
			f.tooVerbose = append(f.tooVerbose, clipLine(line))
		}
		perMinute[rec.Time.UTC().Format("15:04")] += len(line) + 1
	}
	f.minutes = len(perMinute)
	for m, n := range perMinute {
		if n > f.maxMinute {
			f.maxMinute, f.maxMinuteAt = n, m
		}
	}
	return f
}

func (f logFigures) verdicts(pods int) []verdict {
	perPod := f.bytes / max(pods, 1)
	return []verdict{
		{name: fmt.Sprintf("log lines above --v=%d, or not JSON", logVerbosity),
			ok:     len(f.tooVerbose) == 0 && len(f.notJSON) == 0 && f.noTimeOrLevels == 0,
			detail: append(append([]string(nil), f.tooVerbose...), f.notJSON...),
			figure: fmt.Sprintf("%d above, %d not JSON, %d without a time, of %d lines from %d starts", len(f.tooVerbose),
				len(f.notJSON), f.noTimeOrLevels, f.lines, f.starts)},
		{name: "log lines with a request/response body, a hex dump or a key", ok: len(f.bodies) == 0, detail: f.bodies,
			figure: fmt.Sprintf("%d of %d lines", len(f.bodies), f.lines)},
		{name: fmt.Sprintf("log bytes in the busiest minute ≤ %d KiB, per pod ≤ %d KiB", maxLogPerMinute>>10, maxLogPerPod>>10),
			ok: f.maxMinute <= maxLogPerMinute && perPod <= maxLogPerPod && f.lines > 0,
			figure: fmt.Sprintf("%.1f KiB at %s; %.1f KiB a pod (%d KiB over %d minutes, %d lines, %d pods)", float64(f.maxMinute)/1024,
				f.maxMinuteAt, float64(perPod)/1024, f.bytes>>10, f.minutes, f.lines, pods)},
	}
}
