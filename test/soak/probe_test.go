//go:build soak

package soak

import (
	"context"
	"fmt"
	"time"
)

// probeBound is how long a fresh dump may take to reach the server once the work has settled: the quiet period
// (2 s) and one small upload, with slack for a loaded machine.
const probeBound = 60 * time.Second

// probe publishes one more pod after the work settled and writes a small dump: a live archiver uploads it after
// the quiet period, while the pod stays published (it is then idle like the residents). A wedged archiver loop
// never sees the file: this shows it without keeplog_loop_last_progress_seconds.
func (s *soakEnv) probe(ctx context.Context) verdict {
	v := verdict{name: "a dump written after the work settled is archived within " + probeBound.String()}
	rng := newRand(777)
	p, err := s.load.newPod(ctx, rng, true)
	if err == nil {
		err = s.load.writeDump(rng, p, 0, 2)
	}
	if err != nil {
		v.figure = "could not write it: " + err.Error()
		return v
	}
	start := time.Now()
	for time.Since(start) < probeBound && ctx.Err() == nil {
		if len(s.missingOnServer(p)) == 0 {
			v.ok, v.figure = true, fmt.Sprintf("yes, after %s", time.Since(start).Round(100*time.Millisecond))
			return v
		}
		sleep(ctx, 200*time.Millisecond)
	}
	v.figure = "no: not on the server after " + probeBound.String() + " (the archiver saw nothing new)"
	return v
}
