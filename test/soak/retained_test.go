//go:build soak

package soak

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/fstest"
	"github.com/keeplog/keeplog/test/binary"
)

// The retained-directory promise (pkg/archiver/retained.go): an unpublished pod directory is not watched (its
// watches are dropped when the unpublish is handled, and a restarted keeplog never adds them), yet a file that
// appears in it later (a process that outlived the mount, a file an operator drops) is still archived before the
// garbage collector deletes the directory: within RecentlyUnpublished (10 minutes, no flag; the whole short soak)
// every rescan walks it, and the garbage collector's Archived check, which walks it afresh, finds the file and
// asks for a walk at once, keeping the directory until the file is archived.

// retainedGrace is how long after its unpublish a pod directory may still hold a watch of keeplog's: the main loop
// handles the unpublish at its next turn; slack for a loaded machine.
const retainedGrace = 5 * time.Second

// retainedWatches samples, every second, which directories keeplog's inotify watches are on (the kernel's list)
// and every directory of each pod directory unpublished for longer than retainedGrace and not deleted yet.
type retainedWatches struct {
	mu      sync.Mutex
	ticks   int   // seconds sampled
	missed  int   // of which keeplog was down (the chaos) or its watches could not be read
	lastErr error // why they could not be read, the last time
	samples int   // (pod directory, moment) pairs looked at
	dirs    int   // directories looked at, over all samples
	bad     map[string]string
}

func (s *soakEnv) watchRetained(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		watched, err := fstest.InotifyWatched(s.kl.Pid())
		s.retained.mu.Lock()
		s.retained.ticks++
		if err != nil || s.kl.Exited() { // killed by the chaos (its successor is looked at next), or exited meanwhile
			s.retained.missed++
			s.retained.lastErr = err
		}
		s.retained.mu.Unlock()
		if err != nil || s.kl.Exited() {
			continue
		}
		for _, p := range s.load.snapshot() {
			s.load.mu.Lock()
			retained := !p.unpublishedAt.IsZero() && time.Since(p.unpublishedAt) > retainedGrace && p.vanishedAt.IsZero()
			since := time.Since(p.unpublishedAt)
			s.load.mu.Unlock()
			if retained {
				s.retained.check(s.kl.PodDir(p.pod), p.pod.Name, since, watched)
			}
		}
	}
}

// check looks up every directory of one retained pod directory (symlinks not followed) in the watched set.
func (r *retainedWatches) check(podDir, name string, since time.Duration, watched map[fstest.Watched]bool) {
	n := 0
	var bad []string
	_ = filepath.WalkDir(podDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil // gone meanwhile (deleted by the GC), or a file
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		n++
		if watched[fstest.Watched{Dev: uint64(st.Dev), Ino: st.Ino}] {
			rel, _ := filepath.Rel(podDir, p)
			bad = append(bad, rel)
		}
		return nil
	})
	if n == 0 {
		return // deleted before the walk
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples++
	r.dirs += n
	if len(bad) > 0 {
		if r.bad == nil {
			r.bad = map[string]string{}
		}
		r.bad[name] = fmt.Sprintf("%s: %d watched directories %s after its unpublish, e.g. %q", name, len(bad),
			since.Round(time.Second), bad[0])
	}
}

// writeLateDump writes a dump straight into a pod directory that was just unpublished (not through the volume,
// which is gone): a process that outlived the mount, or an operator's file.
func (w *workload) writeLateDump(p *podRun) error {
	w.mu.Lock()
	w.nDump++
	k := w.nDump
	w.mu.Unlock()
	rel := fmt.Sprintf("late/java_pid%d.hprof", 1000+k)
	size := int64(1<<10 + (k%64)<<12)
	sha, err := binary.WriteFile(filepath.Join(w.s.kl.PodDir(p.pod), filepath.FromSlash(rel)), size, uint64(k))
	if err != nil {
		return err
	}
	w.mu.Lock()
	p.dumps = append(p.dumps, dump{rel: rel, depth: 1, size: size, sha: sha})
	p.late = append(p.late, rel)
	w.mu.Unlock()
	return nil
}

// retainedVerdicts: no retained directory held a watch, and every late dump reached the server before its
// directory was deleted (the figures of "dumps lost" and "deleted before on the server" cover them too; this one
// names them).
func (s *soakEnv) retainedVerdicts(pods []*podRun, inv binary.Inventory) []verdict {
	r := &s.retained
	r.mu.Lock()
	var bad []string
	for _, b := range r.bad {
		bad = append(bad, b)
	}
	samples, dirs, ticks, missed, lastErr := r.samples, r.dirs, r.ticks, r.missed, r.lastErr
	r.mu.Unlock()
	missedWhy := ""
	if lastErr != nil {
		missedWhy = " (last: " + lastErr.Error() + ")"
	}
	sort.Strings(bad)
	copies := serverCopies(inv)
	var n, onServer, retained int
	var lateBad []string
	for _, p := range pods {
		s.load.mu.Lock()
		early := map[string]bool{}
		for _, rel := range p.missingAtVanish {
			early[rel] = true
		}
		for _, rel := range p.late {
			n++
			switch {
			case len(copies[p.pod.UID+"/"+rel]) == 0:
				lateBad = append(lateBad, fmt.Sprintf("%s %s: not on the server", p.pod.Name, rel))
			case early[rel]:
				lateBad = append(lateBad, fmt.Sprintf("%s %s: its directory was deleted before it was on the server", p.pod.Name, rel))
			default:
				onServer++
			}
			if p.vanishedAt.IsZero() {
				retained++
			}
		}
		s.load.mu.Unlock()
	}
	return []verdict{
		{name: fmt.Sprintf("retained directories holding a watch %s after unpublish", retainedGrace),
			// keeplog is down about a second for each SIGKILL: a quarter of the run missed means the watches
			// cannot be read (the reason is printed), and the check would pass for want of looking.
			ok: len(bad) == 0 && samples > 0 && missed*4 <= ticks, detail: bad,
			figure: fmt.Sprintf("%d (%d samples of retained directories, %d directories looked up; %d of %d seconds keeplog was down%s)",
				len(bad), samples, dirs, missed, ticks, missedWhy)},
		{name: "dumps written into a retained directory archived before it was deleted",
			ok: len(lateBad) == 0 && n > 0, detail: lateBad,
			figure: fmt.Sprintf("%d of %d (%d directories still retained at the end)", onServer, n, retained)},
	}
}
