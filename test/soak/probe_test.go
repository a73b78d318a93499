//go:build soak

package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/archiver"
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
		// The server has the file before keeplog verified and journalled it; the idle window starts only once the
		// pod's status file says done, or that last status write would land in it.
		if len(s.missingOnServer(p)) == 0 && s.statusDone(p) {
			v.ok, v.figure = true, fmt.Sprintf("yes, after %s", time.Since(start).Round(100*time.Millisecond))
			return v
		}
		sleep(ctx, 200*time.Millisecond)
	}
	v.figure = "no: not on the server after " + probeBound.String() + " (the archiver saw nothing new)"
	return v
}

// statusDone: the pod's status file (read through its published target) lists every dump written to it as done.
func (s *soakEnv) statusDone(p *podRun) bool {
	b, err := os.ReadFile(filepath.Join(p.target, filepath.FromSlash(api.ArchiveStatusPath)))
	var ps archiver.PodStatus
	if err != nil || json.Unmarshal(b, &ps) != nil {
		return false
	}
	done := map[string]bool{}
	for _, f := range ps.Files {
		done[f.Path] = f.State == string(archiver.StateDone)
	}
	s.load.mu.Lock()
	dumps := append([]dump(nil), p.dumps...)
	s.load.mu.Unlock()
	for _, d := range dumps {
		if !done[d.rel] {
			return false
		}
	}
	return true
}
