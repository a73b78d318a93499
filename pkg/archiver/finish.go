package archiver

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/pkg/api"
)

// finish journals a finished file: queued for upload, or skipped by policy.
func (a *Archiver) finish(f *settling, st *unix.Stat_t) {
	pol := a.policy(f.pod.name)
	a.markDirty(f.pod)
	if !pol.Matches(f.rel) { // the policy changed meanwhile
		a.settler.forget(f.pod, f.rel)
		return
	}
	ref := f.pod.ref
	var err error
	now := a.clk.Now()
	it := Item{
		ID: itemID(f.pod.name, f.rel, f.state.Ino, f.state.Size, f.state.MtimeNs), PodDir: f.pod.name, Rel: f.rel,
		Container: containerOf(f.rel), Ino: f.state.Ino, Size: f.state.Size, MtimeNs: f.state.MtimeNs,
		State: StateQueued, DeleteAfterUpload: pol.DeleteAfterUpload, QueuedAt: now, UpdatedAt: now, pod: ref,
		Compression: compressionSpec(pol.Compression, pol.CompressionLevel),
	}
	if pol.FirstOnly {
		first, ok := a.journal.First(f.pod.name, it.Container, pol.FirstOnlyReset)
		if ok && first != it.ID {
			if prev, found := a.journal.Get(first); found && prev.State == StateFailed {
				ok = false // the first one could not be archived: this one takes its place
			}
		}
		switch {
		case ok && first != it.ID:
			it.State = StateSkipped
			it.Error = "firstOnly: " + firstDesc(a.journal, first) + " was the container's first"
		case !ok:
			if err := a.journal.SetFirst(f.pod.name, it.Container, pol.FirstOnlyReset, it.ID); err != nil {
				a.log.Error(err, "Cannot record firstOnly decision; will try again")
				return
			}
		}
	}
	sparseNote := ""
	if it.State == StateQueued {
		if data, ok := a.sparseData(f.pod.name, f.rel, st); ok {
			sparseNote = sparseDecision(&it, pol, data)
		}
	}
	remote := ""
	if it.State == StateQueued {
		if remote, err = RemotePath(a.cfg.Target.BaseDir, ref, f.rel); err != nil {
			it.State, it.Error = StateFailed, err.Error()
		} else if it.Compression != "" {
			remote += zstdSuffix
		}
	}
	if it, err = a.journal.Queue(it, remote); a.journalFailed(err, "Cannot journal finished file", it) {
		if errors.Is(err, errIllegalTransition) { // journalled already: nothing to try again
			a.settler.forget(f.pod, f.rel)
		}
		return
	}
	a.settler.forget(f.pod, f.rel)
	if sparseNote != "" {
		a.log.Info("Sparse file", "pod", ref.String(), "file", f.rel, "decision", sparseNote)
		a.rec.PodEvent(ref, "Warning", api.ReasonArchiveSparse, sparseNote)
	}
	switch it.State {
	case StateQueued:
		a.log.V(1).Info("File finished; queued for upload", "pod", ref.String(), "file", f.rel, "bytes", it.Size)
		a.queue.add(it.ID, now)
	case StateSkipped:
		a.m.uploads.WithLabelValues(ResultSkipped).Inc()
		a.rec.PodEvent(ref, "Normal", api.ReasonArchiveSkipped, fmt.Sprintf("%s not archived: %s", f.rel, it.Error))
	case StateFailed:
		a.m.uploads.WithLabelValues(ResultFailed).Inc()
		a.rec.PodEvent(ref, "Warning", api.ReasonArchiveFailed, fmt.Sprintf("%s cannot be archived: %s", f.rel, it.Error))
	}
}

func firstDesc(j *Journal, id string) string {
	if it, ok := j.Get(id); ok {
		return it.Rel
	}
	return "another file"
}
