package gc

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// fullReadEvery is how often (in passes) every record is read again although the store told of no change: only
// this process writes them, but a hand-edited or restored record is still seen within minutes.
const fullReadEvery = 10

// volumeRecords are one volume's records, kept between passes with only what a pass reads: the volume record with
// the parameters policy.Resolve reads (not the CO's csi.storage.k8s.io/* ones, which every PV has), its pod
// directories' records with the pod's namespace, name and UID sharing the directory name's bytes, and the pod
// directories its targets publish (not the target records). At 10,000 retained volumes the full records were 6.7 MB
// of the heap, the largest part of it.
type volumeRecords struct {
	v     *store.Volume
	dirs  []store.PodDir
	inUse []string // the pod directories of its targets, one per target
	err   error
}

// recordCache keeps every volume's records between passes. A pass over 10,000 retained volumes read 20,000 JSON
// files and listed 20,000 directories every --gc-interval (half of an idle node's CPU); the store says which
// volumes' records changed (store.Subscribe), and only those are read again. note runs under the store's lock, so
// the changed set has a mutex of its own; the rest is the pass goroutine's.
type recordCache struct {
	mu      sync.Mutex
	changed map[string]struct{}

	passes int
	vols   map[string]*volumeRecords // nil until the first full read
}

func (c *recordCache) note(volumeID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed == nil {
		c.changed = map[string]struct{}{}
	}
	c.changed[volumeID] = struct{}{}
}

func (c *recordCache) takeChanged() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := slices.Sorted(maps.Keys(c.changed))
	clear(c.changed)
	return ids
}

// records returns every volume's records sorted by ID: all read again on the first pass and every fullReadEvery
// passes, else only those of the volumes that changed. A failed read makes the next pass read everything.
func (g *GC) records() ([]*volumeRecords, error) {
	c := &g.cache
	ids := c.takeChanged() // before reading: a change during the read is read again at the next pass
	full := c.vols == nil || c.passes%fullReadEvery == 0
	c.passes++
	var err error
	if full {
		err = g.readAllRecords()
	} else {
		err = g.readChangedRecords(ids)
	}
	if err != nil {
		c.vols, c.passes = nil, 0
		return nil, err
	}
	out := make([]*volumeRecords, 0, len(c.vols))
	for _, id := range slices.Sorted(maps.Keys(c.vols)) {
		out = append(out, c.vols[id])
	}
	return out, nil
}

// readAllRecords reads every volume's records, a few readers at once (it is mostly waiting for the filesystem).
func (g *GC) readAllRecords() error {
	vols, err := g.store.ListVolumes()
	if err != nil {
		return err
	}
	recs := make([]*volumeRecords, len(vols))
	parallel(len(vols), func(i int) { recs[i] = g.readVolume(vols[i]) })
	next := make(map[string]*volumeRecords, len(vols))
	for _, r := range recs {
		if r.err != nil {
			return r.err
		}
		next[r.v.ID] = r
	}
	g.cache.vols = next
	return nil
}

// readChangedRecords reads again the records of the named volumes.
func (g *GC) readChangedRecords(ids []string) error {
	for _, id := range ids {
		v, err := g.store.GetVolume(id)
		if errors.Is(err, store.ErrNotFound) {
			delete(g.cache.vols, id)
			continue
		}
		if err != nil {
			return err
		}
		r := g.readVolume(v)
		if r.err != nil {
			return r.err
		}
		g.cache.vols[id] = r
	}
	return nil
}

// readVolume reads one volume's pod directories and targets; a volume being deleted is left to DeleteVolume.
func (g *GC) readVolume(v *store.Volume) *volumeRecords {
	v.Parameters = policyParameters(v.Parameters)
	r := &volumeRecords{v: v}
	if v.Deleting {
		return r
	}
	if r.dirs, r.err = g.store.PodDirs(v.ID); r.err != nil {
		return r
	}
	targets, err := g.store.Targets(v.ID)
	if r.err = err; err != nil {
		return r
	}
	if len(targets) > 0 {
		r.inUse = make([]string, len(targets))
		for i, t := range targets {
			r.inUse[i] = t.PodDir
		}
	}
	return r
}

// policyParameters are the volume parameters other than the CO's (csi.storage.k8s.io/pv/name, pvc/name, ...), which
// policy.Resolve never reads; nil when there are none.
func policyParameters(params map[string]string) map[string]string {
	var out map[string]string
	for k, v := range params {
		if strings.HasPrefix(k, api.COParameterPrefix) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}
