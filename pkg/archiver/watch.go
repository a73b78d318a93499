package archiver

import (
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/fswatch"
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
