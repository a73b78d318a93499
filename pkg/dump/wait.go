package dump

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/keeplog/keeplog/internal/units"
	"github.com/keeplog/keeplog/pkg/policy"
)

// maxAskStep is the longest wait between two questions to the archiver (Deps.Pending) once the dump files are
// quiet. Each question is a fresh walk of the pod directory against the journal, and a large dump takes minutes
// to upload: asking every second walked the directory hundreds of times for one dump. The wait doubles from the
// poll step up to this bound, so DumpFinished (and the slot's release) comes at most this long after the upload.
const maxAskStep = 10 * time.Second

// dumpWait is one wait for a dump: the dump files that are new or changed since before, and since when each is
// unchanged.
type dumpWait struct {
	m      *Manager
	podDir string
	pol    policy.ArchivePolicy
	before map[string]fileState

	changed map[string]fileState
	since   map[string]time.Time
	step    time.Duration // between walks while the files are being written
	ask     time.Duration // the next wait once they are quiet and the archiver still has work
}

// waitFinished waits for new or changed dump files in the pod directory (compared with before) that then stay
// unchanged for the quiet period and, with an archiver, until it has nothing of the pod directory left to do. The
// directory is walked every step while the files are written; once they are quiet, the walk and the archiver's
// question come on a backoff (step, doubling, at most maxAskStep), and a change in between starts the quiet
// period again.
func (m *Manager) waitFinished(ctx context.Context, podDir string, pol policy.ArchivePolicy, before map[string]fileState) ([]string, error) {
	step := min(time.Second, m.cfg.QuietPeriod)
	if step <= 0 {
		step = 100 * time.Millisecond
	}
	w := &dumpWait{m: m, podDir: podDir, pol: pol, before: before, changed: map[string]fileState{},
		since: map[string]time.Time{}, step: step, ask: step}
	for {
		wait, names := w.poll()
		if names != nil {
			return names, nil
		}
		select {
		case <-ctx.Done():
			if len(w.changed) == 0 {
				return nil, fmt.Errorf("no new dump file (matching the archive patterns) appeared in %s: %w", podDir, context.Cause(ctx))
			}
			return nil, fmt.Errorf("dump file not finished or not archived: %w", context.Cause(ctx))
		case <-m.deps.Clock.After(wait):
		}
	}
}

// poll walks the pod directory once and, when the dump files are quiet, asks the archiver. It returns the
// finished files (sizes included), or nil and how long to wait before the next poll.
func (w *dumpWait) poll() (time.Duration, []string) {
	if !w.look(w.m.deps.Clock.Now()) {
		w.ask = w.step
		return w.step, nil
	}
	if w.m.deps.Pending != nil && !w.pol.Off && w.m.deps.Pending(w.podDir) {
		wait := w.ask
		w.ask = min(2*w.ask, maxAskStep)
		return wait, nil
	}
	names := make([]string, 0, len(w.changed))
	for rel, cur := range w.changed {
		names = append(names, fmt.Sprintf("%s (%s)", rel, units.Bytes(uint64(cur.size))))
	}
	sort.Strings(names)
	return 0, names
}

// look records the new or changed dump files; it returns whether there are some and all have been unchanged for
// the quiet period.
func (w *dumpWait) look(now time.Time) bool {
	for rel, cur := range dumpFiles(w.podDir, w.pol) {
		if old, ok := w.before[rel]; ok && old == cur {
			continue
		}
		if prev, ok := w.changed[rel]; !ok || prev != cur {
			w.changed[rel], w.since[rel] = cur, now
		}
	}
	if len(w.changed) == 0 {
		return false
	}
	for rel := range w.changed {
		if now.Sub(w.since[rel]) < w.m.cfg.QuietPeriod {
			return false
		}
	}
	return true
}
