package gc

import (
	"slices"
	"sync"
	"time"

	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
)

// candidate is an unpublished pod directory: owned by a volume record, or an orphan no volume owns.
type candidate struct {
	dir           string
	vol           *volumeState // nil for an orphan
	lastPublished time.Time
	start         time.Time // the retention clock's start
	retainFor     time.Duration
	archive       Archive // asked whether the archiver has work for it; nil when archiving is off for it
	asked         bool    // archive was asked (once a pass: the answer walks the directory)
	pending       bool    // the answer
	gone          bool    // deleted by this pass
}

// isPending reports whether the archiver has work for the directory (and archiving is on for it). The archiver
// answers from its journal and a fresh walk of the directory, so it is asked only for directories a pass would
// delete (expired, or under disk pressure), once.
func (c *candidate) isPending() bool {
	if c.archive == nil {
		return false
	}
	if !c.asked {
		c.pending, c.asked = c.archive.Pending(c.dir), true
	}
	return c.pending
}

func (c *candidate) expired(now time.Time) bool { return !now.Before(c.start.Add(c.retainFor)) }

func (c *candidate) markGone() {
	c.gone = true
	if c.vol != nil {
		c.vol.hadDeleted = true
	}
}

func (c *candidate) volumeID() string {
	if c.vol == nil {
		return ""
	}
	return c.vol.v.ID
}

// volumeState is one volume record as a pass saw it.
type volumeState struct {
	v          *store.Volume
	dirs       []*candidate // its unpublished directories
	published  int          // its published directories
	targets    int
	hadDeleted bool // this pass deleted one of its directories
}

// remaining counts the volume's directories still there.
func (vs *volumeState) remaining() int {
	n := vs.published
	for _, c := range vs.dirs {
		if !c.gone {
			n++
		}
	}
	return n
}

// inventory is everything a pass decides on, read once from the store.
type inventory struct {
	candidates []*candidate
	volumes    []*volumeState
	published  int
}

// inventory reads every volume's records (from the cache of them: only what changed is read again) and the root.
// Volumes being deleted are left to DeleteVolume.
func (g *GC) inventory() (*inventory, error) {
	recs, err := g.records()
	if err != nil {
		return nil, err
	}
	inv := &inventory{}
	owned := make(map[string]bool, len(recs))
	for _, r := range recs {
		v := r.v
		if v.Deleting {
			continue
		}
		dirs := r.dirs // the cache's own: read, never changed
		vs := &volumeState{v: v, targets: len(r.inUse)}
		inv.volumes = append(inv.volumes, vs)
		for i := range dirs {
			pd := &dirs[i]
			owned[pd.Dir] = true
			if slices.Contains(r.inUse, pd.Dir) { // a volume has a few targets at most
				vs.published++
				inv.published++
				continue
			}
			c := &candidate{dir: pd.Dir, vol: vs, lastPublished: pd.LastPublished, start: retentionStart(pd)}
			g.resolve(c, v.Parameters, g.annotations(pd))
			vs.dirs = append(vs.dirs, c)
			inv.candidates = append(inv.candidates, c)
		}
	}
	entries, err := g.store.ListPodDirs()
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if owned[e.Name] {
			continue
		}
		if !e.Real {
			g.log.V(2).Info("Not a real directory in the root; garbage collection leaves it alone", "name", e.Name)
			continue
		}
		// An orphan (a PV deleted by hand and DeleteVolume never came, or a leftover): the directory's mtime starts
		// its clock and the driver defaults are its policy.
		mtime, err := g.store.PodDirModTime(e.Name)
		if err != nil {
			g.log.V(2).Info("Orphan directory vanished or unreadable; skipped this pass", "name", e.Name, "error", err)
			continue
		}
		c := &candidate{dir: e.Name, start: mtime}
		g.resolve(c, nil, nil)
		inv.candidates = append(inv.candidates, c)
	}
	return inv, nil
}

// readers is how many record reads or directory walks a pass runs at once.
const readers = 4

// parallel calls fn(0..n-1) from a few goroutines and waits for them.
func parallel(n int, fn func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(readers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// retentionStart is the directory's unpublish time; for a record interrupted between its target's removal and
// its own update, its last publish.
func retentionStart(pd *store.PodDir) time.Time {
	for _, t := range []time.Time{pd.UnpublishedAt, pd.LastPublished, pd.FirstPublished} {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

// annotations are the pod's keeplog annotations: live when the pod is known, else as last recorded.
func (g *GC) annotations(pd *store.PodDir) map[string]string {
	if pd.Pod != nil && g.live != nil {
		if a, ok := g.live(*pd.Pod); ok {
			return policy.KeeplogAnnotations(a)
		}
	}
	return pd.Annotations
}

// resolve sets the candidate's retention and whom to ask whether the archiver has work for it.
func (g *GC) resolve(c *candidate, params, annotations map[string]string) {
	p, warns := policy.Resolve(params, annotations, g.cfg.Policy)
	if len(warns) > 0 {
		g.log.V(4).Info("Policy warnings (reported as Events by the archiver)", "dir", c.dir, "warnings", warns)
	}
	c.retainFor = p.RetainFor
	if p.Archive && g.archive != nil {
		c.archive = g.archive
	}
}
