// Package usage keeps each keeplog volume's usage (bytes and inodes across all its pod directories) current without
// walking it per question, and acts when a volume passes its limit: an Event on its pods, metrics, and with
// limitAction block an Enforcer that stops the volume from growing until it is back under the limit.
//
// How it stays current: one full walk at start and every WalkInterval (paced to WalkRate entries per second), and in
// between inotify events on every directory of every pod directory. An event only marks a path dirty; every
// UpdateInterval the dirty paths are looked at again (lstat) and the accounting changes by what changed, so a file
// written a thousand times a second costs one lstat per interval. The records under <root>/.keeplog/volumes are
// watched too, so new volumes, pod directories and publications are seen within an interval. A lost event (queue
// overflow) triggers a full walk; the periodic walk corrects anything else.
package usage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/keeplog/keeplog/internal/liveness"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
)

// Defaults of Config.
const (
	DefaultUpdateInterval = time.Second
	DefaultWalkInterval   = time.Minute
	DefaultWalkRate       = 20000
	// DefaultBlockGrace keeps a new pod directory of a blocked volume writable for a moment, so kubelet can apply
	// the pod's fsGroup at mount before the directory becomes immutable.
	DefaultBlockGrace = 10 * time.Second
)

// Event reasons on pods.
const (
	ReasonOverLimit     = "VolumeOverLimit"
	ReasonBlocked       = "VolumeBlocked"
	ReasonBackUnder     = "VolumeBackUnderLimit"
	ReasonEnforceFailed = "VolumeLimitEnforcementFailed"
)

// Config tunes the Tracker; zero values take the defaults.
type Config struct {
	UpdateInterval time.Duration // how often dirty paths are applied and limits checked
	WalkInterval   time.Duration // how often every pod directory is walked in full
	WalkRate       int           // entries per second a periodic walk may visit; < 0 means unpaced
	BlockGrace     time.Duration // how old a pod directory must be before it is blocked
}

// Recorder sends Events on pods (*kube.Events implements it; a nil *kube.Events sends nothing).
type Recorder interface {
	PodEvent(pod store.PodRef, eventType, reason, message string)
}

// Deps are the Tracker's side effects.
type Deps struct {
	Store *store.Store
	// Enforcer blocks pod directories of volumes with limitAction block; nil means block acts as warn.
	Enforcer Enforcer
	// Events may be nil.
	Events Recorder
	// Registerer gets the metrics; nil means none.
	Registerer prometheus.Registerer
	Now        func() time.Time
	// Live records the loop's progress (each iteration, each pod directory and every 256 entries a walk visits,
	// and a heartbeat while idle); nil records nothing.
	Live *liveness.Loop
}

// Status is a volume's usage and limit state.
type Status struct {
	Usage
	LimitBytes int64 // 0: no limit
	Action     policy.LimitAction
	OverLimit  bool
	// Blocked lists the pod directories (names) the Enforcer holds now.
	Blocked []string
	// Missing lists the pod directories (names) the volume owns that are gone from the disk.
	Missing []string
	// MeasuredAt is when the accounting was last brought up to date.
	MeasuredAt time.Time
}

// Tracker keeps every volume's usage on one node. The goroutine in Run is the only one that changes its state; the
// lock makes that state readable from CSI calls and metrics.
type Tracker struct {
	cfg   Config
	deps  Deps
	root  string
	state string // <root>/.keeplog
	w     *fsnotify.Watcher
	m     *metrics

	mu        sync.Mutex
	vols      map[string]*volState
	dirs      map[string]*dirState // pod directory name -> state
	dirty     map[string]struct{}  // absolute paths events named since the last update
	touched   map[string]struct{}  // volume IDs whose usage or records changed since the last evaluate
	records   bool                 // an event under <root>/.keeplog or at the top of the root
	rewalk    bool                 // events were lost: walk everything
	updatedAt time.Time
	started   bool
	release   []string // pod directories (absolute paths) to unblock: their volume is gone or being deleted

	// evaluations counts volumes compared with their limit (tests and benchmarks check that a walk costs
	// O(volumes) of them, not O(volumes x directories)).
	evaluations atomic.Int64
}

type volState struct {
	vol       *store.Volume
	limit     int64
	action    policy.LimitAction
	dirs      []string        // pod directory names
	published map[string]bool // pod directory name -> published now
	over      bool
	notified  map[string]bool // pod directories told about the current excess
}

type dirState struct {
	name      string
	volumeID  string
	pod       *store.PodRef
	t         *tree // nil while the directory is missing
	seen      time.Time
	blocked   bool
	blockedAt Usage // the directory's usage when Block last ran
}

// New builds a Tracker; Run starts it.
func New(cfg Config, deps Deps) (*Tracker, error) {
	if deps.Store == nil {
		return nil, errors.New("usage tracker needs a store")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if cfg.UpdateInterval <= 0 {
		cfg.UpdateInterval = DefaultUpdateInterval
	}
	if cfg.WalkInterval <= 0 {
		cfg.WalkInterval = DefaultWalkInterval
	}
	if cfg.WalkRate == 0 {
		cfg.WalkRate = DefaultWalkRate
	}
	if cfg.BlockGrace <= 0 {
		cfg.BlockGrace = DefaultBlockGrace
	}
	t := &Tracker{cfg: cfg, deps: deps, root: deps.Store.Root(), state: filepath.Join(deps.Store.Root(), store.StateDirName),
		vols: map[string]*volState{}, dirs: map[string]*dirState{}, dirty: map[string]struct{}{}, touched: map[string]struct{}{}}
	m, err := newMetrics(t, deps.Registerer)
	if err != nil {
		return nil, err
	}
	t.m = m
	return t, nil
}

// Run measures every volume, then keeps the accounting current and the limits enforced until ctx ends.
func (t *Tracker) Run(ctx context.Context) error {
	stop, err := t.start(ctx)
	if err != nil {
		return err
	}
	defer stop()
	klog.InfoS("Usage tracking started", "volumes", len(t.vols), "podDirectories", len(t.dirs),
		"updateInterval", t.cfg.UpdateInterval, "walkInterval", t.cfg.WalkInterval, "enforcer", t.enforcerName())
	update := time.NewTicker(t.cfg.UpdateInterval)
	defer update.Stop()
	heartbeat := time.NewTicker(t.deps.Live.Heartbeat())
	defer heartbeat.Stop()
	// The next walk is due WalkInterval after the previous one ended, never while it runs: a walk that takes
	// longer than the interval is not followed by another at once.
	walk := time.NewTimer(t.cfg.WalkInterval)
	defer walk.Stop()
	for {
		t.deps.Live.Progress()
		select {
		case <-ctx.Done():
			return nil
		case <-heartbeat.C:
		case <-update.C:
			t.mu.Lock()
			rewalk := t.rewalk
			t.rewalk = false
			t.mu.Unlock()
			if rewalk {
				if err := t.walkAll(ctx); err != nil {
					return err
				}
			}
			t.update(ctx)
			t.evaluate()
		case <-walk.C:
			if err := t.walkAll(ctx); err != nil {
				return err
			}
			t.evaluate()
			walk.Reset(t.cfg.WalkInterval)
		}
	}
}

// start watches the root and the records, measures everything and takes over a previous run's blocks. stop ends
// the watcher and waits for its reader.
func (t *Tracker) start(ctx context.Context) (stop func(), err error) {
	w, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		return nil, fmt.Errorf("usage: start the file watcher: %w", err)
	}
	for _, dir := range []string{t.root, filepath.Join(t.state, "volumes")} {
		if err := w.Add(dir); err != nil {
			_ = w.Close()
			return nil, fmt.Errorf("usage: watch %s: %w", dir, err)
		}
	}
	t.w = w
	readerDone := make(chan struct{})
	go func() { defer close(readerDone); t.read() }()
	stop = func() { _ = w.Close(); <-readerDone }
	if err := t.walkAll(ctx); err != nil {
		stop()
		return nil, err
	}
	t.adoptBlocks()
	t.mu.Lock()
	t.started = true
	t.mu.Unlock()
	t.evaluate()
	return stop, nil
}

// flush applies pending events and checks the limits now (tests use it instead of waiting for the ticker).
func (t *Tracker) flush(ctx context.Context) {
	t.update(ctx)
	t.evaluate()
}

// read turns watch events into dirty paths until the watcher closes.
func (t *Tracker) read() {
	for {
		select {
		case ev, ok := <-t.w.Events:
			if !ok {
				return
			}
			t.markDirty(ev.Name)
		case err, ok := <-t.w.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				t.m.overflows.Inc()
			} else {
				klog.ErrorS(err, "Usage file watcher error; walking everything again")
			}
			t.mu.Lock()
			t.rewalk = true
			t.mu.Unlock()
		}
	}
}

func (t *Tracker) markDirty(path string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rest, ok := strings.CutPrefix(path, t.root+"/")
	switch {
	case !ok:
		return
	case rest == store.StateDirName || strings.HasPrefix(rest, store.StateDirName+"/"):
		t.records = true
		return
	case !strings.Contains(rest, "/"):
		t.records = true // a pod directory appeared or went
	default:
		t.dirty[filepath.Dir(path)] = struct{}{}
	}
	t.dirty[path] = struct{}{}
}

// watchDir adds an inotify watch; a directory that cannot be watched is still measured by the periodic walk.
func (t *Tracker) watchDir(dir string) {
	if t.w == nil {
		return
	}
	if err := t.w.Add(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		klog.V(2).InfoS("Cannot watch directory; its usage is corrected by the periodic walk only", "dir", dir, "err", err)
	}
}

// unwatchDir drops the watch of a directory that left a pod directory (renamed away or deleted).
func (t *Tracker) unwatchDir(dir string) {
	if t.w != nil {
		_ = t.w.Remove(dir)
	}
}

// refreshRecords reads the volume records and measures pod directories not measured yet.
func (t *Tracker) refreshRecords(ctx context.Context) error {
	vols, err := t.deps.Store.ListVolumes()
	if err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	next := map[string]*volState{}
	owner := map[string]*store.PodDir{}
	ownerVol := map[string]string{}
	for _, v := range vols {
		if v.Deleting {
			continue
		}
		vdir := filepath.Join(t.state, "volumes", v.ID)
		for _, sub := range []string{"", "pods", "targets"} {
			t.watchDir(filepath.Join(vdir, sub))
		}
		pods, err := t.deps.Store.PodDirs(v.ID)
		if err != nil {
			return fmt.Errorf("usage: pod directories of volume %s: %w", v.ID, err)
		}
		targets, err := t.deps.Store.Targets(v.ID)
		if err != nil {
			return fmt.Errorf("usage: publications of volume %s: %w", v.ID, err)
		}
		p, _ := policy.Resolve(v.Parameters, nil, policy.Defaults{})
		vs := &volState{vol: v, limit: v.CapacityBytes, action: p.LimitAction, published: map[string]bool{},
			notified: map[string]bool{}}
		if vs.limit <= 0 {
			vs.limit = p.SizeBytes
		}
		if old := t.vols[v.ID]; old != nil {
			vs.over, vs.notified = old.over, old.notified
		}
		for i := range pods {
			vs.dirs = append(vs.dirs, pods[i].Dir)
			owner[pods[i].Dir] = &pods[i]
			ownerVol[pods[i].Dir] = v.ID
		}
		sort.Strings(vs.dirs)
		for _, tg := range targets {
			vs.published[tg.PodDir] = true
		}
		next[v.ID] = vs
	}
	var measureDirs []string
	t.mu.Lock()
	for id, vs := range next {
		if changed(t.vols[id], vs) {
			t.touched[id] = struct{}{}
		}
	}
	t.vols = next
	for name, d := range t.dirs {
		if _, ok := owner[name]; !ok {
			delete(t.dirs, name) // its volume was deleted (Enforcer markers of it are released in evaluate)
			if p, err := t.deps.Store.PodDirPath(name); err == nil && d.blocked {
				t.release = append(t.release, p)
			}
		}
	}
	now := t.deps.Now()
	for name, p := range owner {
		d := t.dirs[name]
		if d == nil {
			d = &dirState{name: name, volumeID: ownerVol[name], pod: p.Pod, seen: now}
			t.dirs[name] = d
		}
		d.volumeID = ownerVol[name]
		active := t.activeLocked(d.volumeID)
		switch {
		case d.t == nil, active && d.t.compacted():
			measureDirs = append(measureDirs, name) // new, or its volume is published again: watch it
		case !active && !d.t.compacted():
			for _, dir := range d.t.compact() {
				t.unwatchDir(dir)
			}
		}
	}
	t.mu.Unlock()
	sort.Strings(measureDirs)
	for _, name := range measureDirs {
		if ctx.Err() != nil {
			return nil
		}
		t.measureDir(name, nil)
	}
	return nil
}

// changed reports whether a volume's record changed in a way that its evaluation depends on.
func changed(old, cur *volState) bool {
	return old == nil || old.limit != cur.limit || old.action != cur.action ||
		!slices.Equal(old.dirs, cur.dirs) || !maps.Equal(old.published, cur.published)
}

// activeLocked reports whether any pod directory of the volume is published: only then can its usage change fast
// (a pod writes), so only then are its directories watched and kept entry by entry. A volume whose pods are all
// gone is kept by its totals and corrected by the periodic walk.
func (t *Tracker) activeLocked(volumeID string) bool {
	v := t.vols[volumeID]
	return v != nil && len(v.published) > 0
}

// measureDir walks one pod directory and puts the result in place. Events that arrive during the walk stay dirty
// and are applied afterwards, so the result is never older than the walk.
func (t *Tracker) measureDir(name string, pace *pacer) {
	path, err := t.deps.Store.PodDirPath(name)
	if err != nil {
		klog.ErrorS(err, "Pod directory name not usable", "dir", name)
		return
	}
	t.mu.Lock()
	active := false
	if d := t.dirs[name]; d != nil {
		active = t.activeLocked(d.volumeID)
	}
	t.mu.Unlock()
	onDir := t.watchDir
	if !active {
		onDir = nil
	}
	start := time.Now()
	tr, err := measure(path, onDir, pace)
	t.m.walkSeconds.Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		klog.ErrorS(err, "Could not measure pod directory", "dir", path)
	}
	if tr != nil && !active {
		tr.compact()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if d := t.dirs[name]; d != nil {
		if (d.t == nil) != (tr == nil) || (tr != nil && d.t.usage != tr.usage) {
			t.touched[d.volumeID] = struct{}{}
		}
		d.t = tr // nil when missing
	}
}

// walkAll rereads the records and walks every pod directory, applying pending events between directories so that
// limits are checked while a long walk runs.
func (t *Tracker) walkAll(ctx context.Context) error {
	t.mu.Lock()
	t.records = false
	t.mu.Unlock()
	if err := t.refreshRecords(ctx); err != nil {
		return err
	}
	t.mu.Lock()
	names := make([]string, 0, len(t.dirs))
	for n := range t.dirs {
		names = append(names, n)
	}
	t.mu.Unlock()
	sort.Strings(names)
	pace := &pacer{perSecond: t.cfg.WalkRate, progress: t.deps.Live.Progress, sleep: func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}}
	for _, n := range names {
		if ctx.Err() != nil {
			return nil
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
	t.updatedAt = t.deps.Now()
	t.mu.Unlock()
	return nil
}

// update applies the dirty paths.
func (t *Tracker) update(ctx context.Context) {
	t.mu.Lock()
	records := t.records
	t.records = false
	t.mu.Unlock()
	if records {
		if err := t.refreshRecords(ctx); err != nil {
			klog.ErrorS(err, "Could not read the volume records")
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	paths := make([]string, 0, len(t.dirty))
	for p := range t.dirty {
		paths = append(paths, p)
	}
	clear(t.dirty)
	sort.Strings(paths) // parents before children
	// What is gone leaves first and its directories' watches are removed, so that a directory renamed to a path
	// applied in the second pass gets a watch under its new name (inotify keeps one watch per inode, and fsnotify
	// would report the moved directory's events under its old name).
	var gone, there []string
	for _, p := range paths {
		if _, err := os.Lstat(p); err != nil {
			gone = append(gone, p)
		} else {
			there = append(there, p)
		}
	}
	for _, p := range append(gone, there...) {
		rest := strings.TrimPrefix(p, t.root+"/")
		name, rel, _ := strings.Cut(rest, "/")
		d := t.dirs[name]
		if d == nil || d.t == nil {
			continue
		}
		before := d.t.usage
		err := d.t.update(rel, t.watchDir, t.unwatchDir)
		if errors.Is(err, fs.ErrNotExist) {
			d.t = nil
		}
		if d.t == nil || d.t.usage != before {
			t.touched[d.volumeID] = struct{}{}
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			klog.V(2).InfoS("Could not measure a path; the periodic walk will", "path", p, "err", err)
		}
	}
	t.updatedAt = t.deps.Now()
}

// Status returns a volume's usage; false when the volume is not tracked (yet).
func (t *Tracker) Status(volumeID string) (Status, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.vols[volumeID]
	if v == nil || !t.started {
		return Status{}, false
	}
	return t.statusLocked(v), true
}

func (t *Tracker) statusLocked(v *volState) Status {
	s := Status{LimitBytes: v.limit, Action: v.action, OverLimit: v.over, MeasuredAt: t.updatedAt}
	for _, name := range v.dirs {
		d := t.dirs[name]
		if d == nil {
			continue
		}
		if d.t == nil {
			s.Missing = append(s.Missing, name)
		} else {
			s.Bytes += d.t.usage.Bytes
			s.Inodes += d.t.usage.Inodes
		}
		if d.blocked {
			s.Blocked = append(s.Blocked, name)
		}
	}
	return s
}

// Reserved is what volumes may still grow into: for each volume with a limit that is published or not used yet
// (created, its pod about to start), its limit minus its usage. Volumes whose pods are gone do not grow.
func (t *Tracker) Reserved() (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.started {
		return 0, false
	}
	var sum int64
	for _, v := range t.vols {
		if v.limit <= 0 || (len(v.dirs) > 0 && len(v.published) == 0) {
			continue
		}
		s := t.statusLocked(v)
		sum += max(v.limit-s.Bytes, 0)
	}
	return sum, true
}

func (t *Tracker) enforcerName() string {
	if t.deps.Enforcer == nil {
		return "none"
	}
	return t.deps.Enforcer.Name()
}
