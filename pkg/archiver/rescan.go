package archiver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/keeplog/keeplog/internal/fswatch"
	"github.com/keeplog/keeplog/internal/safefs"
)

// scanPod walks one pod directory; true when it walked all of it (nothing it could not enter).
func (a *Archiver) scanPod(w *fswatch.Watcher, pod podDir) bool {
	a.loop.Progress() // a rescan of thousands of pod directories is progress too
	a.watchDir(w, pod, "")
	a.removeLegacyStatus(pod)
	res, err := a.fs.walk(pod.name, func(e entry) { a.visit(w, pod, e) })
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			a.podGone(pod)
			return false
		}
		a.log.V(2).Info("Cannot scan pod directory", "podDir", pod.name, "err", err.Error())
		return false
	}
	a.unwalked(pod, res)
	return len(res.Mounts) == 0 && len(res.TooDeep) == 0
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
	present := map[string]bool{}
	now := a.clk.Now()
	busy := a.busyPods()
	if !a.seeded {
		a.deferWalked(a.seedUnpublished(names), now, busy)
		a.seeded = true
	}
	for _, pod := range names {
		present[pod.name] = true
		if !a.isUnpublished(pod.name) {
			a.scanPod(w, pod) // never marked: MarkPublished dropped its mark
			continue
		}
		due := a.scanDue(pod, now)
		walked := due && a.scanPod(w, pod)
		quiet := a.scheduleScan(pod, now, busy[pod.name] || a.settler.hasPod(pod))
		if due {
			a.setWalked(pod.name, walked && quiet && len(a.rejected[pod]) == 0)
		}
	}
	if err := a.journal.KeepWalked(present); err != nil {
		a.log.Error(err, "Cannot prune journal")
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
