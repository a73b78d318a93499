package archiver

import (
	"time"

	"github.com/keeplog/keeplog/internal/fswatch"
	"github.com/keeplog/keeplog/internal/jitter"
)

// Retained pod directories (unpublished: their pod is gone, keeplog keeps the directory until its retention ends)
// are a node's bulk: a week of a CronJob is 10,080 of them, while a handful are published. Nothing in the pod
// writes to them any more, so the archiver does not watch them (a watch per directory of each, tens of thousands of
// inotify watches, and their rescans every RescanInterval, were most of an idle node plugin's CPU and memory):
//
//   - at unpublish its watches are dropped and it is walked once (the stdout copies are already there);
//   - while it has work (a file settling, an upload not finished, a deletion after upload to retry) or was
//     unpublished less than RecentlyUnpublished ago it is walked at every rescan, as a watched one is;
//   - after that once every RetainedRescanInterval, each at its own point in the interval so the walks of
//     thousands are spread instead of bunched;
//   - when Archived finds a file not journalled in one (the garbage collector or the dump manager asks), it is
//     walked at once;
//   - published again (MarkPublished), it is watched again;
//   - one whose walk found nothing to do is marked in the journal (walked.go), and a restart neither walks it at
//     once nor reads its record to know it is retained.
//
// "Archived" never depends on any of this: it is always the journal and a fresh walk, so a file the archiver has
// not found yet only delays the garbage collector, it is never lost.

// unwatchPod drops every watch inside a pod directory (the root's watch still reports the pod directory itself).
func (a *Archiver) unwatchPod(w *fswatch.Watcher, pod podDir) {
	for rel := range a.watched[pod] {
		_ = w.Remove(a.fs.abs(pod.name, rel)) // a directory already gone has lost its watch with it
	}
	delete(a.watched, pod)
	delete(a.known, pod.name)
}

// busyPods lists the pod directories with work in the archiver: a file settling, an item not finished, or a
// deletion after upload not done yet. One pass over the journal and the settler, for a whole rescan.
func (a *Archiver) busyPods() map[string]bool {
	busy := map[string]bool{}
	for _, f := range a.settler.files {
		busy[f.pod.name] = true
	}
	for _, it := range a.journal.Items() {
		if !it.State.terminal() || (it.State == StateDone && it.DeleteAfterUpload && !it.Deleted) {
			busy[it.PodDir] = true
		}
	}
	return busy
}

// scanDue says whether a rescan walks an unpublished pod directory now.
func (a *Archiver) scanDue(pod podDir, now time.Time) bool {
	next, ok := a.nextScan[pod.name]
	return !ok || !now.Before(next)
}

// scheduleScan sets when the next rescan walks an unpublished pod directory after this one, and says whether it is
// quiet: no work in the archiver and not unpublished recently.
func (a *Archiver) scheduleScan(pod podDir, now time.Time, busy bool) bool {
	a.mu.Lock()
	at, known := a.unpubAt[pod.name]
	a.mu.Unlock()
	if busy || (known && now.Sub(at) < a.cfg.RecentlyUnpublished) {
		a.nextScan[pod.name] = now // the next rescan, like a watched one
		return false
	}
	if next, ok := a.nextScan[pod.name]; ok && next.After(now) {
		return true
	}
	a.nextScan[pod.name] = now.Add(a.cfg.RetainedRescanInterval/2 + jitter.Offset(pod.name, a.cfg.RetainedRescanInterval/2))
	return true
}

// deferWalked, at the first rescan, schedules the pod directories seeded unpublished by their walked mark
// (walked.go) for their next retained rescan instead of walking them now; one with work in the archiver is walked
// now.
func (a *Archiver) deferWalked(marked []podDir, now time.Time, busy map[string]bool) {
	for _, p := range marked {
		a.scheduleScan(p, now, busy[p.name])
	}
	if len(marked) > 0 {
		a.log.Info("Retained pod directories walked before the restart are walked again in their next retained rescan",
			"podDirs", len(marked), "retainedRescanInterval", a.cfg.RetainedRescanInterval)
	}
}

// setWalked marks a pod directory (its name) walked or drops its mark (walked.go).
func (a *Archiver) setWalked(pod string, on bool) {
	if err := a.journal.SetWalked(pod, on); err != nil {
		a.log.Error(err, "Cannot update the archive journal", "podDir", pod)
	}
}

// requestScan asks the main loop to walk an unpublished pod directory now (Archived found a file it has not
// journalled). Any goroutine.
func (a *Archiver) requestScan(pod string) {
	a.mu.Lock()
	if !a.unpublished[pod] {
		a.mu.Unlock()
		return // watched: its events bring the file
	}
	a.wantScan[pod] = true
	a.mu.Unlock()
	a.poke()
}

// seedUnpublished marks the pod directories the records say are unpublished, at start: a restarted keeplog has
// not been told of their unpublish, and must not watch them. One the journal marks walked is unpublished without
// reading its record: its mark went when it was published again (MarkPublished drops it before returning), and the
// driver tells of every publication still mounted before Run, so a mark left by a crash between a mount and
// MarkPublished goes too. It returns those seeded by their mark.
func (a *Archiver) seedUnpublished(pods []podDir) (marked []podDir) {
	if a.isRetained == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range pods {
		if _, told := a.unpublished[p.name]; told {
			continue
		}
		if a.journal.Walked(p.name) {
			a.unpublished[p.name] = true
			marked = append(marked, p)
		} else if a.isRetained(p.name) {
			a.unpublished[p.name] = true
		}
	}
	return marked
}

// takeWake takes what MarkPublished, MarkUnpublished and requestScan left for the main loop.
func (a *Archiver) takeWake() (pub, unpub, want map[string]bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	pub, unpub, want = a.newPub, a.newUnpub, a.wantScan
	a.newPub, a.newUnpub, a.wantScan = map[string]bool{}, map[string]bool{}, map[string]bool{}
	return pub, unpub, want
}

// handleWake: a published pod directory is watched again and walked; an unpublished one loses its watches and is
// walked; one asked for is walked. The names were given by the driver, the garbage collector or the dump manager:
// each is discovered here (a name that is not a pod directory's is skipped).
func (a *Archiver) handleWake(w *fswatch.Watcher) {
	pub, unpub, want := a.takeWake()
	now := a.clk.Now()
	for name := range pub {
		if p, ok := a.discover(name); ok { // MarkPublished dropped its walked mark
			delete(a.nextScan, p.name)
			a.scanPod(w, p)
		}
	}
	for name := range unpub {
		if p, ok := a.discover(name); ok {
			a.unwatchPod(w, p)
			a.setWalked(p.name, false)
			a.scanPod(w, p)
			a.nextScan[p.name] = now
		}
	}
	for name := range want {
		if p, ok := a.discover(name); ok && a.isUnpublished(name) {
			a.setWalked(p.name, false) // Archived found a file the journal does not have
			a.scanPod(w, p)
		}
	}
	if len(pub)+len(unpub)+len(want) > 0 {
		a.poll()
	}
}
