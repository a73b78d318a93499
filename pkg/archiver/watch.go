package archiver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/fswatch"
	"github.com/keeplog/keeplog/internal/safefs"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/policy"
)

// watchDir adds a watch for a directory inside a pod directory.
func (a *Archiver) watchDir(w *fswatch.Watcher, pod podDir, rel string) {
	if a.watched[pod][rel] || a.isUnpublished(pod.name) { // an unpublished pod directory is not watched (retained.go)
		return
	}
	p := a.fs.abs(pod.name, rel)
	// inotify takes a path: it is watched only if the path, opened without following symlinks, is a directory on
	// the pod directory's mount (a mount inside the pod directory is never watched, walked or read).
	d, err := a.fs.openDir(pod.name, rel)
	if err != nil {
		a.log.V(2).Info("Not watching directory", "dir", p, "err", err.Error())
		return
	}
	d.Close()
	if err := w.Add(p); err != nil {
		a.log.V(2).Info("Cannot watch directory; relying on rescans", "dir", p, "err", err.Error())
		return
	}
	if a.watched[pod] == nil {
		a.watched[pod] = map[string]bool{}
		a.known[pod.name] = pod
	}
	a.watched[pod][rel] = true
}

// splitEvent maps an absolute path to (pod directory, path inside it): a watch event is one of the places a pod
// directory is discovered.
func (a *Archiver) splitEvent(name string) (podDir, string, bool) {
	rest, ok := strings.CutPrefix(name, a.fs.root+"/")
	if !ok || rest == "" {
		return podDir{}, "", false
	}
	dir, rel, _ := strings.Cut(rest, "/")
	if strings.HasPrefix(dir, ".") {
		return podDir{}, "", false // <root>/.keeplog and other hidden entries
	}
	pod, ok := a.discover(dir)
	return pod, rel, ok
}

// handleBatch handles what the watcher collected: an overflow (events were lost) rescans everything, keeping what
// was known; otherwise each changed name is looked at once.
func (a *Archiver) handleBatch(w *fswatch.Watcher, b fswatch.Batch) {
	if b.Errs > 0 {
		a.log.V(2).Info("File watch errors (no events lost)", "count", b.Errs, "last", b.LastErr.Error())
	}
	if b.Overflow {
		a.m.overflows.Inc()
		a.log.V(1).Info("File watch queue overflowed; rescanning")
		a.rescan(w)
		return
	}
	for i, name := range b.Names {
		a.handleEvent(w, name, b.Ops[i])
	}
}

func (a *Archiver) handleEvent(w *fswatch.Watcher, name string, op fswatch.Op) {
	pod, rel, ok := a.splitEvent(name)
	if !ok {
		return
	}
	if rel == "" {
		a.scanPod(w, pod)
		return
	}
	if inOwnDir(rel) || policy.IsOwnFile(path.Base(rel)) { // keeplog's own names: known before any syscall
		return
	}
	if op == fswatch.Write && a.onlyWritten(pod, rel) {
		return
	}
	st, err := a.fs.lstat(pod.name, rel)
	if err != nil {
		a.vanished(pod, rel)
		return
	}
	a.visit(w, pod, entry{rel: rel, st: st, kind: st.Mode & unix.S_IFMT})
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		// A new directory: its content may predate the watch.
		_ = a.walkSub(w, pod, rel)
	}
}

// onlyWritten says whether a file that was only written to needs no look: it matches no pattern (an application's
// log line, thousands a second on a busy node), or it is settling already (the poll looks at it again). A write
// never makes a directory or a new name, so nothing else can have changed.
func (a *Archiver) onlyWritten(pod podDir, rel string) bool {
	if _, settling := a.settler.get(pod, rel); settling {
		return true
	}
	return !a.policy(pod.name).Matches(rel)
}

// vanished forgets a path that is gone. Only a file the archiver knew of changes the pod's status: a vanished
// temporary file (an application's, or podinfo's) is no work at all.
func (a *Archiver) vanished(pod podDir, rel string) {
	delete(a.watched[pod], rel)
	_, settling := a.settler.get(pod, rel)
	_, rejected := a.rejected[pod][rel]
	if settling || rejected {
		a.settler.forget(pod, rel)
		delete(a.rejected[pod], rel)
		a.markDirty(pod)
	}
}

// walkSub visits everything below a directory of a pod.
func (a *Archiver) walkSub(w *fswatch.Watcher, pod podDir, rel string) error {
	d, err := a.fs.openDir(pod.name, rel)
	if err != nil {
		return err
	}
	res, err := a.fs.walkDir(d, pod.name, rel, func(e entry) { a.visit(w, pod, e) })
	if err == nil {
		a.unwalked(pod, res)
	}
	return err
}

func inOwnDir(rel string) bool {
	return rel == api.KeeplogDir || strings.HasPrefix(rel, api.KeeplogDir+"/")
}

// visit looks at one entry of a pod directory.
func (a *Archiver) visit(w *fswatch.Watcher, pod podDir, e entry) {
	if inOwnDir(e.rel) {
		return
	}
	switch e.kind {
	case unix.S_IFDIR:
		a.watchDir(w, pod, e.rel)
	case unix.S_IFREG:
		if a.policy(pod.name).Matches(e.rel) {
			a.consider(pod, e.rel, &e.st)
		}
	default:
		if a.policy(pod.name).Matches(e.rel) {
			kind := "not a regular file"
			if e.kind == unix.S_IFLNK {
				kind = "a symbolic link"
			}
			a.reject(pod, e.rel, kind+": never read")
		}
	}
}

// reject reports, once, a matching path that will not be read.
func (a *Archiver) reject(pod podDir, rel, why string) {
	a.settler.forget(pod, rel)
	m := a.rejected[pod]
	if m == nil {
		m = map[string]string{}
		a.rejected[pod] = m
	}
	if m[rel] == why {
		return
	}
	m[rel] = why
	a.log.Info("Not archiving file", "pod", pod.ref.String(), "file", rel, "reason", why)
	a.rec.PodEvent(pod.ref, "Warning", api.ReasonArchiveRejected, fmt.Sprintf("%s is %s", rel, why))
	a.markDirty(pod)
}

// consider puts a finished-looking regular file under observation unless the
// journal already has it.
func (a *Archiver) consider(pod podDir, rel string, st *unix.Stat_t) {
	fst := stateOf(st)
	if it, ok := a.journal.Get(itemID(pod.name, rel, fst.Ino, fst.Size, fst.MtimeNs)); ok {
		a.settler.forget(pod, rel)
		if it.State == StateDone && it.DeleteAfterUpload && !it.Deleted {
			a.deleteLocal(it)
		}
		return
	}
	if _, known := a.settler.get(pod, rel); !known {
		a.markDirty(pod)
	}
	if m := a.rejected[pod]; m != nil {
		delete(m, rel)
	}
	a.settler.observe(pod, rel, fst, a.clk.Now())
}

// scanPod walks one pod directory.
func (a *Archiver) scanPod(w *fswatch.Watcher, pod podDir) {
	a.loop.Progress() // a rescan of thousands of pod directories is progress too
	a.watchDir(w, pod, "")
	a.removeLegacyStatus(pod)
	res, err := a.fs.walk(pod.name, func(e entry) { a.visit(w, pod, e) })
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			a.podGone(pod)
			return
		}
		a.log.V(2).Info("Cannot scan pod directory", "podDir", pod.name, "err", err.Error())
		return
	}
	a.unwalked(pod, res)
}

// unwalked reports, once each, the directories a walk did not enter: another mount (never crossed) or deeper
// than safefs.MaxWalkDepth. Their files cannot be archived, so the pod directory is not archived and the garbage
// collector keeps it (Archived says why); they show as rejected in the status file.
func (a *Archiver) unwalked(pod podDir, res walkResult) {
	for _, rel := range res.Mounts {
		if a.rejected[pod][rel] == "" {
			a.m.unwalked.WithLabelValues(UnwalkedMount).Inc()
		}
		a.reject(pod, rel, "a mount point: keeplog never enters another mount")
	}
	for _, rel := range res.TooDeep {
		if a.rejected[pod][rel] == "" {
			a.m.unwalked.WithLabelValues(UnwalkedTooDeep).Inc()
		}
		a.reject(pod, rel, fmt.Sprintf("deeper than %d levels: not walked", safefs.MaxWalkDepth))
	}
}

// rescan walks every published pod directory and the unpublished ones that are due (retained.go), and forgets
// pod directories that are gone.
func (a *Archiver) rescan(w *fswatch.Watcher) {
	names, err := a.podDirs()
	if err != nil {
		a.log.Error(err, "Cannot list the archive root", "root", a.fs.root)
		return
	}
	if !a.seeded {
		a.seedUnpublished(names)
		a.seeded = true
	}
	present := map[string]bool{}
	now := a.clk.Now()
	busy := a.busyPods()
	for _, pod := range names {
		present[pod.name] = true
		if !a.isUnpublished(pod.name) {
			a.scanPod(w, pod)
			continue
		}
		if a.scanDue(pod, now) {
			a.scanPod(w, pod)
		}
		a.scheduleScan(pod, now, busy[pod.name] || a.settler.hasPod(pod))
	}
	gone := map[podDir]bool{}
	for _, it := range a.journal.Items() {
		if !present[it.PodDir] {
			gone[it.podDir()] = true
		}
	}
	for _, f := range a.settler.all() {
		if !present[f.pod.name] {
			gone[f.pod] = true
		}
	}
	for p := range gone {
		a.podGone(p)
	}
	a.poll()
}

// podDirs lists the pod directories in the root: the listing is one of the places a pod directory is discovered.
func (a *Archiver) podDirs() ([]podDir, error) {
	ents, err := os.ReadDir(a.fs.root)
	if err != nil {
		return nil, err
	}
	var pods []podDir
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !e.IsDir() { // IsDir is false for a symlink
			continue
		}
		if pod, ok := a.discover(name); ok {
			pods = append(pods, pod)
		}
	}
	return pods, nil
}

// podGone forgets a pod directory that no longer exists. Items still queued
// stay: their worker finds the file gone and reports it.
func (a *Archiver) podGone(pod podDir) {
	a.settler.forgetPod(pod)
	delete(a.rejected, pod)
	delete(a.statusSums, pod)
	delete(a.watched, pod)
	delete(a.known, pod.name)
	delete(a.nextScan, pod.name)
	for _, it := range a.journal.PodItems(pod.name) {
		if it.State.terminal() {
			if err := a.journal.Remove(it.ID); err != nil {
				a.log.Error(err, "Cannot prune journal")
			}
		}
	}
	if len(a.journal.PodItems(pod.name)) == 0 {
		if err := a.journal.ForgetPod(pod.name); err != nil {
			a.log.Error(err, "Cannot prune journal")
		}
		a.mu.Lock()
		delete(a.unpublished, pod.name)
		delete(a.unpubAt, pod.name)
		delete(a.dirty, pod)
		a.mu.Unlock()
	}
}

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

// errScanPending: a search for writers that timed out has not returned yet.
var errScanPending = errors.New("a search for processes writing files that timed out has not returned yet")

// writerScan is one search for writers running in its own goroutine.
type writerScan struct {
	done chan struct{}
	open map[FileID]bool
	err  error
}

// openForWriting asks the WriterChecker, for at most WriterScanTimeout: /proc/<pid>/fd of every process is stat-ed,
// and a stat of a file on a hung network filesystem never returns. A search that times out is left running (no new
// one starts before it returns; its answer, for older files, is dropped) and the files stay settling, so the main
// loop goes on with events, rescans, uploads and status files.
func (a *Archiver) openForWriting(ids map[FileID]bool) (map[FileID]bool, error) {
	if a.scan != nil {
		select {
		case <-a.scan.done:
			a.log.Info("The search for processes writing files returned again")
			a.scan = nil
		default:
			return nil, errScanPending
		}
	}
	s := &writerScan{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.open, s.err = a.writers.OpenForWriting(ids)
	}()
	t := a.clk.NewTimer(a.cfg.WriterScanTimeout)
	defer t.Stop()
	select {
	case <-s.done:
		return s.open, s.err
	case <-t.C():
		a.scan = s
		return nil, fmt.Errorf("the search for processes writing files takes more than %s (a hung filesystem?); files wait until it returns", a.cfg.WriterScanTimeout)
	}
}
