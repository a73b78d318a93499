// Package usage keeps each keeplog volume's usage (bytes and inodes across all its pod directories) current without
// walking it per question, and acts when a volume passes its limit: an Event on its pods, metrics, and with
// limitAction block an Enforcer that stops the volume from growing until it is back under the limit.
//
// How it stays current: one full walk at start, and every WalkInterval (paced to WalkRate entries per second) a walk
// of every published pod directory and of a sixtieth of the retained ones (each retained one once an hour by
// default: nobody writes there), and in between inotify events on every directory of every published pod
// directory. An event only marks a path dirty; every UpdateInterval the dirty paths are looked at again (lstat) and
// the accounting changes by what changed, so a file written a thousand times a second costs one lstat per interval.
// keeplog's own records are never watched: the store tells the tracker which volume's records changed
// (store.Subscribe), and only that volume's are read again, so new volumes, pod directories and publications are
// seen within an interval. Nor is what keeplog writes inside a pod directory (its .keeplog directory) watched; the
// walks count it. Events are drained by internal/fswatch, so adding or removing a watch never waits for this loop,
// and the tracker's lock is never held across either. A lost event (queue overflow) triggers a full walk; the
// periodic walks correct anything else.
package usage

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/fswatch"
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
	// Log is where the tracker logs (the zero Logger discards).
	Log   logr.Logger
	Store *store.Store
	// Enforcer blocks pod directories of volumes with limitAction block; nil means block acts as warn.
	Enforcer Enforcer
	// Events may be nil.
	Events Recorder
	// Registerer gets the metrics; nil means none.
	Registerer prometheus.Registerer
	// Live records the loop's progress (each iteration, each pod directory and every 256 entries a walk visits,
	// and a heartbeat while idle); nil records nothing.
	Live *liveness.Loop
	// Clock dates usage and limit changes and drives the watch drain's heartbeat; the real clock when nil.
	Clock clock.Clock
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

// Tracker keeps every volume's usage on one node. The goroutine in Run is the only one that changes its state (the
// maps, and the trees, which it walks and updates without the lock: a walk adds watches); the lock makes what
// others read (volumes, directories, each directory's published usage) consistent for CSI calls and metrics.
type Tracker struct {
	cfg  Config
	deps Deps
	root string
	w    *fswatch.Watcher
	m    *metrics

	mu        sync.Mutex
	vols      map[string]*volState
	dirs      map[string]*dirState // pod directory name -> state
	dirty     map[string]struct{}  // absolute paths events named since the last update
	touched   map[string]struct{}  // volume IDs whose usage or records changed since the last evaluate
	overIDs   map[string]struct{}  // volume IDs over their limit (evaluated each time: a block grace ends with time)
	rewalk    bool                 // events were lost: walk everything
	updatedAt time.Time
	started   bool
	release   []string // pod directories (absolute paths) to unblock: their volume is gone or being deleted
	walkN     int      // periodic walks so far (the Run goroutine's)

	// records holds the IDs of volumes whose records the store changed, filled by the store's notification
	// (under the store's lock: so behind a mutex of its own, which nothing holds while it calls the store).
	records recordChanges

	// evaluations counts volumes compared with their limit (tests and benchmarks check that a walk costs
	// O(volumes) of them, not O(volumes x directories)).
	evaluations atomic.Int64
	// pathStats counts the lstats of dirty paths (a test checks that a line appended to a log costs one).
	pathStats atomic.Int64
}

// volState keeps what usage needs of a volume's records, not the records themselves: a node keeps 10,000 volumes, and
// holding each parsed record (its parameters map among them) was 8 MB of the plugin's 29 MB live heap.
type volState struct {
	limit     int64
	action    policy.LimitAction
	dirs      []string        // pod directory names
	published map[string]bool // pod directory name -> published now; nil when none is
	over      bool
	notified  map[string]bool // pod directories told about the current excess; nil until one is
}

type dirState struct {
	name     string
	volumeID string
	pod      *store.PodRef
	t        *tree // nil while the directory is missing; the Run goroutine's alone
	// usage and present are what others read of t: set under the lock whenever t changed.
	usage     Usage
	present   bool
	seen      time.Time
	blocked   bool
	blockedAt Usage // the directory's usage when Block last ran
}

// New builds a Tracker; Run starts it.
func New(cfg Config, deps Deps) (*Tracker, error) {
	if deps.Store == nil {
		return nil, errors.New("usage tracker needs a store")
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
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
	t := &Tracker{cfg: cfg, deps: deps, root: deps.Store.Root(),
		vols: map[string]*volState{}, dirs: map[string]*dirState{}, dirty: map[string]struct{}{}, touched: map[string]struct{}{},
		overIDs: map[string]struct{}{}}
	m, err := newMetrics(t, deps.Registerer)
	if err != nil {
		return nil, err
	}
	t.m = m
	return t, nil
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

// SumDirBytes is what the named pod directories hold together, in allocated bytes, as the last walk and the events
// since left them, read under one lock; unknown lists the names it has no figure for (not a tracked volume's, or
// missing from the disk). ready is false until the first walk has ended, when it has no figure for anything yet.
// The garbage collector's retained-bytes gauge reads it instead of walking every retained directory again.
func (t *Tracker) SumDirBytes(names []string) (sum int64, unknown []string, ready bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.started {
		return 0, nil, false
	}
	for _, name := range names {
		if d := t.dirs[name]; d != nil && d.present {
			sum += d.usage.Bytes
		} else {
			unknown = append(unknown, name)
		}
	}
	return sum, unknown, true
}

func (t *Tracker) statusLocked(v *volState) Status {
	s := Status{LimitBytes: v.limit, Action: v.action, OverLimit: v.over, MeasuredAt: t.updatedAt}
	for _, name := range v.dirs {
		d := t.dirs[name]
		if d == nil {
			continue
		}
		if !d.present {
			s.Missing = append(s.Missing, name)
		} else {
			s.Bytes += d.usage.Bytes
			s.Inodes += d.usage.Inodes
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
