package archiver

import (
	"path/filepath"
)

// MarkUnpublished tells the archiver that a pod's volume was unpublished:
// its files no longer need the quiet period (they still must not be open
// for writing), and the directory is no longer watched (retained.go).
// podDir is the pod directory's path or base name.
func (a *Archiver) MarkUnpublished(podDir string) {
	pod := filepath.Base(podDir)
	a.mu.Lock()
	a.unpublished[pod] = true
	a.unpubAt[pod] = a.clk.Now()
	a.newUnpub[pod] = true
	delete(a.newPub, pod)
	a.mu.Unlock()
	a.poke()
}

// MarkPublished tells the archiver that a pod directory's volume is published (again, after a kubelet restart
// or a pod's second volume): its files settle for the quiet period and it is watched.
//
// Its walked mark (walked.go) is dropped before it returns: a restart must not take it for a retained one. The
// driver's Reconcile tells of every publication still mounted before Run, so a mark left by a crash between a mount
// and this call goes too.
func (a *Archiver) MarkPublished(podDir string) {
	pod := filepath.Base(podDir)
	a.setWalked(pod, false)
	a.mu.Lock()
	wasUnpublished := a.unpublished[pod]
	delete(a.unpublished, pod)
	delete(a.unpubAt, pod)
	delete(a.newUnpub, pod)
	if wasUnpublished {
		a.newPub[pod] = true
	}
	a.mu.Unlock()
	if wasUnpublished {
		a.poke()
	}
}

func (a *Archiver) isUnpublished(pod string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.unpublished[pod]
}

func (a *Archiver) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *Archiver) markDirty(pod podDir) {
	a.mu.Lock()
	a.dirty[pod] = true
	a.mu.Unlock()
	a.poke()
}
