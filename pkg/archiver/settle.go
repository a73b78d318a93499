package archiver

import (
	"errors"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// fileState is what "unchanged" is judged by.
type fileState struct {
	Dev     uint64
	Ino     uint64
	Size    int64
	MtimeNs int64
}

func stateOf(st *unix.Stat_t) fileState {
	return fileState{Dev: uint64(st.Dev), Ino: st.Ino, Size: st.Size, MtimeNs: st.Mtim.Nano()}
}

// settling is a candidate file that is not (yet) known to be finished.
type settling struct {
	pod   podDir // its pod directory, as discovered
	rel   string // path inside it
	state fileState
	since time.Time // when state was first seen as it is now
}

func (s *settling) key() string { return s.pod.name + "/" + s.rel }

// settler decides when candidate files are finished writing: their state
// has not changed for the quiet period, or their pod was unpublished. (The
// caller also asks a WriterChecker before treating them as finished.) It is
// used from one goroutine only.
type settler struct {
	quiet time.Duration
	files map[string]*settling
}

func newSettler(quiet time.Duration) *settler {
	return &settler{quiet: quiet, files: map[string]*settling{}}
}

// observe records the current state of a candidate. A new file or a changed
// state restarts its quiet period.
func (s *settler) observe(pod podDir, rel string, st fileState, now time.Time) {
	k := pod.name + "/" + rel
	if cur, ok := s.files[k]; ok {
		if cur.state == st {
			return
		}
		cur.state, cur.since = st, now
		return
	}
	s.files[k] = &settling{pod: pod, rel: rel, state: st, since: now}
}

func (s *settler) forget(pod podDir, rel string) { delete(s.files, pod.name+"/"+rel) }

func (s *settler) forgetPod(pod podDir) {
	for k, f := range s.files {
		if f.pod == pod {
			delete(s.files, k)
		}
	}
}

// hasPod says whether a file of the pod directory is settling.
func (s *settler) hasPod(pod podDir) bool {
	for _, f := range s.files {
		if f.pod == pod {
			return true
		}
	}
	return false
}

func (s *settler) get(pod podDir, rel string) (*settling, bool) {
	f, ok := s.files[pod.name+"/"+rel]
	return f, ok
}

// due lists the candidates whose state has been stable for the quiet period
// at now, or whose pod is unpublished; oldest first.
func (s *settler) due(now time.Time, unpublished func(pod string) bool) []*settling {
	var out []*settling
	for _, f := range s.files {
		if now.Sub(f.since) >= s.quiet || (unpublished != nil && unpublished(f.pod.name)) {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].state.MtimeNs != out[j].state.MtimeNs {
			return out[i].state.MtimeNs < out[j].state.MtimeNs
		}
		return out[i].key() < out[j].key()
	})
	return out
}

// all lists every candidate (for the status file).
func (s *settler) all() []*settling {
	out := make([]*settling, 0, len(s.files))
	for _, f := range s.files {
		out = append(out, f)
	}
	return out
}

// poll re-checks settling files and hands finished ones to the journal.
func (a *Archiver) poll() {
	now := a.clk.Now()
	for _, f := range a.settler.all() {
		if st, ok := a.restat(f); ok {
			a.consider(f.pod, f.rel, &st)
		}
	}
	due := a.settler.due(now, a.isUnpublished)
	if len(due) == 0 {
		return
	}
	ids := map[FileID]bool{}
	for _, f := range due {
		ids[FileID{Dev: f.state.Dev, Ino: f.state.Ino}] = true
	}
	open, err := a.openForWriting(ids)
	if errors.Is(err, errScanPending) {
		return // said once, when it timed out
	}
	if err != nil {
		a.log.Error(err, "Cannot find processes writing files; will try again")
		return
	}
	for _, f := range due {
		if open[FileID{Dev: f.state.Dev, Ino: f.state.Ino}] {
			continue
		}
		// The file may have been written and closed between the stat above and the search (which then finds no
		// writer): it is finished only if it is still as it was when it settled.
		st, ok := a.restat(f)
		if !ok {
			continue
		}
		if stateOf(&st) != f.state {
			a.consider(f.pod, f.rel, &st)
			continue
		}
		a.finish(f, &st)
	}
}

// restat stats a settling file again; false when it is gone (forgotten) or no longer a regular file (rejected).
func (a *Archiver) restat(f *settling) (unix.Stat_t, bool) {
	st, err := a.fs.lstat(f.pod.name, f.rel)
	if err != nil {
		a.settler.forget(f.pod, f.rel)
		a.markDirty(f.pod)
		return st, false
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		a.reject(f.pod, f.rel, "not a regular file: never read")
		return st, false
	}
	return st, true
}
