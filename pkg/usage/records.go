package usage

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
)

// recordChanges collects the volumes whose records the store changed. note runs under the store's lock (it is the
// store's notification), so it only records the ID under a mutex that is never held while calling the store.
type recordChanges struct {
	mu  sync.Mutex
	ids map[string]struct{}
}

func (r *recordChanges) note(volumeID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = map[string]struct{}{}
	}
	r.ids[volumeID] = struct{}{}
}

// take returns and clears the IDs noted so far, sorted.
func (r *recordChanges) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := slices.Sorted(maps.Keys(r.ids))
	clear(r.ids)
	return ids
}

// refreshAll reads every volume's records (at each full walk) and measures pod directories not measured yet.
func (t *Tracker) refreshAll(ctx context.Context) error {
	t.records.take() // everything is read now
	vols, err := t.deps.Store.ListVolumes()
	if err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	seen := map[string]bool{}
	var measure []string
	for _, v := range vols {
		if v.Deleting {
			continue
		}
		seen[v.ID] = true
		vs, pods, err := t.readVolume(v)
		if err != nil {
			return err
		}
		measure = append(measure, t.install(v.ID, vs, pods)...)
	}
	t.mu.Lock()
	var gone []string
	for id := range t.vols {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	t.mu.Unlock()
	for _, id := range gone {
		t.install(id, nil, nil)
	}
	t.measureNew(ctx, measure)
	return nil
}

// refreshChanged reads again the records of the volumes the store said changed, and only those: a publish on a
// node that keeps 10,000 volumes reads one volume's records, not every one.
func (t *Tracker) refreshChanged(ctx context.Context) error {
	var measure []string
	var errs []error
	for _, id := range t.records.take() {
		v, err := t.deps.Store.GetVolume(id)
		switch {
		case errors.Is(err, store.ErrNotFound) || (err == nil && v.Deleting):
			t.install(id, nil, nil)
			continue
		case err != nil:
			errs = append(errs, err)
			continue
		}
		vs, pods, err := t.readVolume(v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		measure = append(measure, t.install(id, vs, pods)...)
	}
	t.measureNew(ctx, measure)
	if len(errs) > 0 {
		t.mu.Lock()
		t.rewalk = true // what could not be read now is read by a full walk
		t.mu.Unlock()
	}
	return errors.Join(errs...)
}

// readVolume reads one volume's pod directories and publications.
func (t *Tracker) readVolume(v *store.Volume) (*volState, []store.PodDir, error) {
	pods, err := t.deps.Store.PodDirs(v.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("usage: pod directories of volume %s: %w", v.ID, err)
	}
	targets, err := t.deps.Store.Targets(v.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("usage: publications of volume %s: %w", v.ID, err)
	}
	p, _ := policy.Resolve(v.Parameters, nil, policy.Defaults{})
	// published and notified stay nil until they hold something: most of a node's volumes are retained ones,
	// and a full walk reads every volume's records again.
	vs := &volState{limit: v.CapacityBytes, action: p.LimitAction}
	if vs.limit <= 0 {
		vs.limit = p.SizeBytes
	}
	for i := range pods {
		vs.dirs = append(vs.dirs, pods[i].Dir)
	}
	sort.Strings(vs.dirs)
	for _, tg := range targets {
		if vs.published == nil {
			vs.published = map[string]bool{}
		}
		vs.published[tg.PodDir] = true
	}
	return vs, pods, nil
}

// install puts one volume's records in place (vs nil: the volume is gone or being deleted) and returns its pod
// directories that must be measured (new, or published again after being kept by their totals). Directories that
// became inactive are compacted, and their watches removed once the lock is released.
func (t *Tracker) install(id string, vs *volState, pods []store.PodDir) []string {
	var measure, unwatch []string
	t.mu.Lock()
	old := t.vols[id]
	if vs != nil && old != nil {
		vs.over, vs.notified = old.over, old.notified
	}
	if changed(old, vs) {
		t.touched[id] = struct{}{}
	}
	if vs == nil {
		delete(t.vols, id)
		delete(t.overIDs, id)
	} else {
		t.vols[id] = vs
	}
	if old != nil {
		for _, name := range old.dirs {
			if d := t.dirs[name]; d != nil && d.volumeID == id && (vs == nil || !slices.Contains(vs.dirs, name)) {
				t.forgetDirLocked(d)
			}
		}
	}
	now := t.deps.Clock.Now()
	active := t.activeLocked(id)
	for i := range pods {
		name := pods[i].Dir
		d := t.dirs[name]
		if d == nil {
			d = &dirState{name: name, pod: pods[i].Pod, seen: now}
			t.dirs[name] = d
		}
		d.volumeID = id
		switch {
		case d.t == nil, active && d.t.compacted():
			measure = append(measure, name) // new, or its volume is published again: watch it
		case !active && !d.t.compacted():
			unwatch = append(unwatch, d.t.compact()...)
		}
	}
	t.mu.Unlock()
	for _, dir := range unwatch {
		t.unwatchDir(dir)
	}
	return measure
}

// forgetDirLocked drops a pod directory its volume no longer owns; a blocked one is released in evaluate.
func (t *Tracker) forgetDirLocked(d *dirState) {
	delete(t.dirs, d.name)
	if p, err := t.deps.Store.PodDirPath(d.name); err == nil && d.blocked {
		t.release = append(t.release, p)
	}
}

// changed reports whether a volume's record changed in a way that its evaluation depends on.
func changed(old, cur *volState) bool {
	if old == nil || cur == nil {
		return old != cur
	}
	return old.limit != cur.limit || old.action != cur.action ||
		!slices.Equal(old.dirs, cur.dirs) || !maps.Equal(old.published, cur.published)
}

// activeLocked reports whether any pod directory of the volume is published: only then can its usage change fast
// (a pod writes), so only then are its directories watched and kept entry by entry. A volume whose pods are all
// gone is kept by its totals and corrected by the periodic walk.
func (t *Tracker) activeLocked(volumeID string) bool {
	v := t.vols[volumeID]
	return v != nil && len(v.published) > 0
}

// measureNew measures the named pod directories, in order.
func (t *Tracker) measureNew(ctx context.Context, names []string) {
	sort.Strings(names)
	for _, name := range names {
		if ctx.Err() != nil {
			return
		}
		t.measureDir(name, nil)
	}
}

// measureDir walks one pod directory (without the lock: the walk adds watches) and puts the result in place.
// Events that arrive during the walk stay in the watcher and are applied afterwards, so the result is never older
// than the walk.
func (t *Tracker) measureDir(name string, pace *pacer) {
	path, err := t.deps.Store.PodDirPath(name)
	if err != nil {
		t.deps.Log.Error(err, "Pod directory name not usable", "dir", name)
		return
	}
	t.mu.Lock()
	active := false
	if d := t.dirs[name]; d != nil {
		active = t.activeLocked(d.volumeID)
	}
	t.mu.Unlock()
	var onDir func(string)
	if active {
		onDir = t.watchDir
	}
	start := time.Now()
	tr, err := measure(path, onDir, pace)
	t.m.walkSeconds.Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.deps.Log.Error(err, "Could not measure pod directory", "dir", path)
	}
	if tr != nil && !active {
		tr.compact()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if d := t.dirs[name]; d != nil {
		t.setTreeLocked(d, tr) // nil when missing
	}
}

// setTreeLocked installs a directory's accounting and publishes its usage; a change marks its volume.
func (t *Tracker) setTreeLocked(d *dirState, tr *tree) {
	d.t = tr
	present, usage := tr != nil, Usage{}
	if tr != nil {
		usage = tr.usage
	}
	if present != d.present || usage != d.usage {
		t.touched[d.volumeID] = struct{}{}
	}
	d.present, d.usage = present, usage
}

// walkAll rereads every record and walks every pod directory: at start and after lost events.
func (t *Tracker) walkAll(ctx context.Context) error {
	if err := t.refreshAll(ctx); err != nil {
		return err
	}
	t.mu.Lock()
	names := make([]string, 0, len(t.dirs))
	for n := range t.dirs {
		names = append(names, n)
	}
	t.mu.Unlock()
	t.walkDirs(ctx, names)
	return nil
}

// retainedWalkEvery is how many periodic walks it takes to walk every retained pod directory (one whose volume is
// published nowhere) once, and to reread every record: each periodic walk takes its share of them. Nobody writes
// to a retained directory but an operator by hand or the archiver's deleteAfterUpload, and the store tells of
// every record change, so once an hour (at the default --usage-walk-interval) corrects both; walking 10,000 retained
// directories every minute cost a few CPU seconds a minute on an idle node.
const retainedWalkEvery = 60

// periodicWalk walks every published pod directory and the share of the retained ones due at this walk.
func (t *Tracker) periodicWalk(ctx context.Context) error {
	t.walkN++
	share := t.walkN % retainedWalkEvery
	if share == 0 {
		if err := t.refreshAll(ctx); err != nil {
			return err
		}
	}
	t.mu.Lock()
	var names []string
	for n, d := range t.dirs {
		if t.activeLocked(d.volumeID) || d.t == nil || retainedShare(n) == share {
			names = append(names, n)
		}
	}
	t.mu.Unlock()
	t.walkDirs(ctx, names)
	return nil
}

// retainedShare spreads retained pod directories over the periodic walks by their name: FNV-1a, whose low bits are
// poor for names that differ in a digit or two, then a 64-bit finalizer (MurmurHash3's) before the modulo.
func retainedShare(name string) int {
	h := fnv.New64a()
	h.Write([]byte(name))
	v := h.Sum64()
	v ^= v >> 33
	v *= 0xff51afd7ed558ccd
	v ^= v >> 33
	return int(v % retainedWalkEvery)
}

// walkDirs measures the named pod directories at the walk's pace, applying pending events between directories so
// that limits are checked while a long walk runs.
func (t *Tracker) walkDirs(ctx context.Context, names []string) {
	sort.Strings(names)
	pace := &pacer{perSecond: t.cfg.WalkRate, progress: t.deps.Live.Progress, sleep: func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}}
	for _, n := range names {
		if ctx.Err() != nil {
			return
		}
		t.measureDir(n, pace)
		t.deps.Live.Progress()
		// Events and limits between pod directories, so that a long walk does not delay them; both cost what
		// changed (dirty paths, touched volumes), not what the walk has seen so far.
		t.update(ctx)
		t.evaluate()
	}
	t.m.walks.Inc()
	t.mu.Lock()
	t.updatedAt = t.deps.Clock.Now()
	t.mu.Unlock()
}
