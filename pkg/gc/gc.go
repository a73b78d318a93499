// Package gc is keeplog's retention and garbage collection on one node: it deletes pod directories whose retention
// has expired once the archiver has nothing pending for them, deletes more (oldest first, archived first) when the
// root's filesystem passes a high watermark, refuses new volumes past a hard limit, and cleans up the volumes whose
// directories are all gone: a CSI inline volume's record here, a Released PV through the API (its reclaim policy
// is switched to Delete, so csi-provisioner calls DeleteVolume). The cluster-wide part, PVs whose node no longer
// exists, runs in one leader-elected instance (orphanpv.go).
//
// Rules, in order, for each pod directory (owned by a volume record, or an orphan no volume owns):
//   - published (a target record names it): never deleted;
//   - retention: its clock starts at unpublish (the record's UnpublishedAt; an orphan's directory mtime), and lasts
//     the directory's policy RetainFor (pod annotation > StorageClass parameter > --retain-for, capped by
//     --max-retain-for);
//   - archive: while archiving is on for it and the archiver has anything pending for it, it is kept;
//   - disk pressure: above the high watermark, unpublished directories are deleted before their time, those with
//     nothing pending first, each group oldest first, until the filesystem is below the low watermark; pending
//     ones only with DeleteUnarchived.
//
// Deletion goes through store.DeletePodDir, which re-checks the records under the store lock and never follows a
// symlink. DryRun logs what would be deleted and deletes nothing.
package gc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/liveness"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
)

// Archive tells whether the archiver still has work for a pod directory (pkg/archiver's Pending implements it).
type Archive interface {
	// Pending is true unless every file of the pod directory (its base name) that matches its archive patterns,
	// at any depth, is journalled done or skipped: the archiver answers from its journal and a fresh walk of the
	// directory, never from what it has seen so far.
	Pending(podDir string) bool
}

// Recorder sends Events about pods (*kube.Events implements it).
type Recorder interface {
	PodEvent(pod store.PodRef, eventType, reason, message string)
}

// Event reasons and deletion reasons (the metric's label).
const (
	CauseRetention     = "retention"
	CauseDiskPressure  = "disk_pressure"
	CauseInodePressure = "inode_pressure"
)

// Config is the collector's behaviour, from flags.
type Config struct {
	// Node is this node's name; DriverName the CSI driver name PVs carry.
	Node, DriverName string
	// Interval between passes.
	Interval time.Duration
	// DryRun logs what would be deleted and deletes nothing.
	DryRun bool
	// HighWatermark, LowWatermark and HardLimit are percentages of the root's filesystem in use.
	HighWatermark, LowWatermark, HardLimit float64
	// InodeHighWatermark, InodeLowWatermark and InodeHardLimit are the same for its inodes.
	InodeHighWatermark, InodeLowWatermark, InodeHardLimit float64
	// SharesFilesystem says, by neighbour ("kubelet", "pod-logs", "runtime"), whether the root is on its
	// filesystem (FindShared); exported as keeplog_root_shares_filesystem.
	SharesFilesystem map[string]bool
	// DeleteUnarchived lets disk pressure delete directories the archiver still has work for.
	DeleteUnarchived bool
	// OrphanGrace is how long a volume record without directories and without its PV is kept (node-local), and how
	// long a PV whose node is gone is kept (leader).
	OrphanGrace time.Duration
	// Policy are the retention defaults.
	Policy policy.Defaults
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("gc interval %s must be positive", c.Interval))
	}
	errs = append(errs, validWatermarks("disk", c.HighWatermark, c.LowWatermark, c.HardLimit),
		validWatermarks("inode", c.InodeHighWatermark, c.InodeLowWatermark, c.InodeHardLimit))
	if c.OrphanGrace <= 0 {
		errs = append(errs, fmt.Errorf("orphan grace %s must be positive", c.OrphanGrace))
	}
	return errors.Join(errs...)
}

// validWatermarks checks one set of watermarks (what: "disk" or "inode").
func validWatermarks(what string, high, low, hard float64) error {
	var errs []error
	for _, w := range []struct {
		name string
		v    float64
	}{{"high watermark", high}, {"low watermark", low}, {"hard limit", hard}} {
		if w.v <= 0 || w.v > 100 {
			errs = append(errs, fmt.Errorf("%s %s %g%% must be in (0, 100]", what, w.name, w.v))
		}
	}
	if low >= high {
		errs = append(errs, fmt.Errorf("%s low watermark %g%% must be below the high watermark %g%%", what, low, high))
	}
	if high > hard {
		errs = append(errs, fmt.Errorf("%s high watermark %g%% must not exceed the hard limit %g%%", what, high, hard))
	}
	return errors.Join(errs...)
}

// API is the part of the Kubernetes API the collector uses: PVs (Released ones let go, those of vanished nodes
// deleted) and nodes (whether a PV's node still exists). kube.Clients' PV and node clients are these (a fake
// clientset's in tests).
type API struct {
	PVs   PersistentVolumes
	Nodes Nodes
}

// PersistentVolumes reads and changes PVs.
type PersistentVolumes interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.PersistentVolume, error)
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.PersistentVolumeList, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions,
		subresources ...string) (*corev1.PersistentVolume, error)
	Update(ctx context.Context, pv *corev1.PersistentVolume, opts metav1.UpdateOptions) (*corev1.PersistentVolume, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// Nodes reads nodes.
type Nodes interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Node, error)
}

// Deps are the collector's side effects.
type Deps struct {
	// Log is where the collector logs (the zero Logger discards).
	Log   logr.Logger
	Store *store.Store
	// Clock is the real clock unless a test sets a fake one.
	Clock clock.WithTicker
	// Statfs reads the root's filesystem; nil means statfs(2).
	Statfs func(path string) (DiskUsage, error)
	// Archive is nil when archiving is off: nothing is ever pending.
	Archive Archive
	// Kube is nil without API access: Released PVs are then left alone.
	Kube *API
	// Live gives a live pod's annotations (nil: the ones recorded in the store).
	Live policy.LiveAnnotations
	// Events is nil for no Events.
	Events Recorder
	// Registerer gets the metrics; nil means none.
	Registerer prometheus.Registerer
	// Forget is told each deleted directory (the policy resolver's cache); nil means nobody.
	Forget func(dir string)
	// Sizes gives the retained directories' sizes for the retained-bytes gauge (the usage tracker, which keeps
	// them anyway); nil, or a directory it does not know, means the collector measures that directory itself. While
	// it is not ready (its first walk runs) the gauge waits for it.
	Sizes DirSizes
	// Liveness records the loop's progress (each pass, each directory deleted, and a heartbeat while it waits for
	// the next pass), so that /healthz fails when the collector is wedged; nil records nothing.
	Liveness *liveness.Loop
}

// GC is the node's garbage collector.
type GC struct {
	cfg     Config
	log     logr.Logger
	store   *store.Store
	clock   clock.WithTicker
	statfs  func(string) (DiskUsage, error)
	archive Archive
	kube    *API
	live    policy.LiveAnnotations
	events  Recorder
	forget  func(string)
	loop    *liveness.Loop
	sizer   DirSizes
	metrics *metrics

	mu         sync.Mutex
	sizes      map[string]sizeEntry // what this collector measured itself (sizer has no figure); pass goroutine only, behind mu for tests
	heldMounts map[string]bool      // directories reported kept for a mount inside (mounts.go), behind mu

	// cache keeps the records between passes (records.go); the store tells it what changed.
	cache recordCache
}

// DirSizes sums the allocated bytes of pod directories (by name) in one call: unknown lists the names it has no
// figure for; ready is false while it has measured nothing yet.
type DirSizes interface {
	SumDirBytes(names []string) (sum int64, unknown []string, ready bool)
}

type sizeEntry struct {
	bytes int64
	at    time.Time
}

// New checks the configuration and registers the metrics.
func New(cfg Config, deps Deps) (*GC, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil {
		return nil, errors.New("gc: Deps.Store is required")
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	if deps.Statfs == nil {
		deps.Statfs = Statfs
	}
	if deps.Forget == nil {
		deps.Forget = func(string) {}
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	for with, shared := range cfg.SharesFilesystem {
		m.shares.WithLabelValues(with).Set(boolGauge(shared))
	}
	g := &GC{cfg: cfg, log: deps.Log, store: deps.Store, clock: deps.Clock, statfs: deps.Statfs, archive: deps.Archive,
		kube: deps.Kube, live: deps.Live, events: deps.Events, forget: deps.Forget, loop: deps.Liveness, sizer: deps.Sizes, metrics: m,
		sizes: map[string]sizeEntry{}}
	// For the collector's lifetime, which is the store's: the subscription only marks volumes.
	deps.Store.Subscribe(g.cache.note)
	return g, nil
}

// Run makes a pass now and then every Interval until ctx ends. A failed pass is logged and retried at the next tick.
//
// The loop records its progress (Deps.Liveness) at each pass, for each directory a pass deletes, and on a
// heartbeat while it waits: an interval longer than the loop's bound is not a stall, a pass stuck in one step is.
func (g *GC) Run(ctx context.Context) error {
	t := g.clock.NewTicker(g.cfg.Interval)
	defer t.Stop()
	hb := g.clock.NewTicker(g.loop.Heartbeat())
	defer hb.Stop()
	for {
		g.loop.Progress()
		if _, err := g.Pass(ctx); err != nil {
			g.log.Error(err, "Garbage collection pass failed; retrying at the next one", "interval", g.cfg.Interval)
		}
		if !g.wait(ctx, t.C(), hb.C()) {
			return nil
		}
	}
}

// wait returns at the next pass (true) or when ctx ends (false), recording progress on each heartbeat meanwhile.
func (g *GC) wait(ctx context.Context, next, heartbeat <-chan time.Time) bool {
	for {
		g.loop.Progress()
		select {
		case <-ctx.Done():
			return false
		case <-next:
			return true
		case <-heartbeat:
		}
	}
}

// Deletion is one pod directory a pass deleted (or, dry run, would have).
type Deletion struct {
	Dir   string
	Cause string // CauseRetention or CauseDiskPressure
}

// Result is what one pass did.
type Result struct {
	Deleted []Deletion
	// Retained are the unpublished directories kept.
	Retained int
	// UsedPercent and InodesUsedPercent are the root filesystem's use of bytes and inodes after the pass (dry run:
	// estimated).
	UsedPercent, InodesUsedPercent float64
	// Volumes are the volume records deleted here (inline ephemeral, or persistent without a PV).
	Volumes []string
	// ReclaimedPVs are the Released PVs switched to reclaim policy Delete.
	ReclaimedPVs []string
}

// Pass makes one garbage collection pass: retention, then disk pressure, then the volumes left without directories,
// then the metrics. Errors of single directories or volumes are logged and joined into the returned error; the pass
// goes on with the others.
func (g *GC) Pass(ctx context.Context) (Result, error) {
	var res Result
	var errs []error
	if !g.cfg.DryRun {
		if err := g.store.EmptyTrash(); err != nil {
			errs = append(errs, err)
		}
	}
	inv, err := g.inventory()
	if err != nil {
		return res, fmt.Errorf("gc: read the records: %w", err)
	}
	now := g.clock.Now()
	g.loop.Progress() // the inventory of every directory is the pass's longest step
	for _, c := range inv.candidates {
		if c.expired(now) && !c.isPending() {
			errs = append(errs, g.delete(c, CauseRetention, now, &res))
			g.loop.Progress()
		}
	}
	errs = append(errs, g.relieve(inv, now, &res))
	errs = append(errs, g.cleanVolumes(ctx, inv, now, &res))
	g.observe(inv, now, &res)
	return res, errors.Join(errs...)
}

// delete removes one candidate directory (logs it in dry run), counts it and sends the Event.
func (g *GC) delete(c *candidate, cause string, now time.Time, res *Result) error {
	why := g.why(c, cause, now)
	if g.cfg.DryRun {
		g.log.Info("Dry run: would delete pod directory", "dir", c.dir, "cause", cause, "why", why)
		c.markGone()
		res.Deleted = append(res.Deleted, Deletion{Dir: c.dir, Cause: cause})
		return nil
	}
	path, err := g.store.DeletePodDir(c.dir, store.DeleteCheck{Volume: c.volumeID(), LastPublished: c.lastPublished})
	if err != nil {
		if errors.Is(err, store.ErrInUse) || errors.Is(err, store.ErrConflict) {
			g.log.Info("Pod directory not deleted: it changed since the pass looked", "dir", c.dir, "reason", err)
			return nil
		}
		if errors.Is(err, store.ErrHoldsMount) {
			g.heldMount(c, err)
			return nil
		}
		return fmt.Errorf("gc: delete pod directory %s (%s): %w", c.dir, cause, err)
	}
	c.markGone()
	g.forget(c.dir)
	g.deletedHeld(c.dir)
	g.metrics.deletions.WithLabelValues(cause).Inc()
	res.Deleted = append(res.Deleted, Deletion{Dir: c.dir, Cause: cause})
	g.log.Info("Deleted pod directory", "dir", path, "cause", cause, "why", why)
	if ref, err := store.ParsePodDirName(c.dir); err == nil && g.events != nil {
		typ := "Normal"
		if cause != CauseRetention {
			typ = "Warning"
		}
		g.events.PodEvent(ref, typ, api.ReasonLogDirectoryDeleted, fmt.Sprintf("keeplog deleted the pod's log directory %s on node %s: %s", path, g.cfg.Node, why))
	}
	return nil
}

func (g *GC) why(c *candidate, cause string, now time.Time) string {
	age := now.Sub(c.start).Round(time.Second)
	if cause == CauseRetention {
		return fmt.Sprintf("retention %s expired (unpublished %s ago)", c.retainFor, age)
	}
	what := fmt.Sprintf("disk pressure above %g%%", g.cfg.HighWatermark)
	if cause == CauseInodePressure {
		what = fmt.Sprintf("inode pressure above %g%% of the filesystem's inodes", g.cfg.InodeHighWatermark)
	}
	if c.isPending() {
		return fmt.Sprintf("%s with --gc-delete-unarchived; the archiver had NOT finished with it (unpublished %s ago, retention %s)", what, age, c.retainFor)
	}
	return fmt.Sprintf("%s, before its retention %s expired (unpublished %s ago)", what, c.retainFor, age)
}
