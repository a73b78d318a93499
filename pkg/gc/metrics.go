package gc

import (
	"errors"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keeplog/keeplog/internal/jitter"
	"github.com/keeplog/keeplog/pkg/api"
)

// sizeTTL is how long a retained directory's measured size is trusted, at least: retained directories are not
// published, so they change little, and measuring them all often walks the whole root (10,000 directories: seconds
// of CPU). Each directory's own share of another sizeTTL (jitter.Offset) is added, so the measurements of directories
// that appeared together spread over that second half hour instead of coming back all in one pass.
const sizeTTL = 30 * time.Minute

type metrics struct {
	retainedDirs  prometheus.Gauge
	retainedBytes prometheus.Gauge
	oldest        prometheus.Gauge
	usedRatio     prometheus.Gauge
	inodesRatio   prometheus.Gauge
	shares        *prometheus.GaugeVec
	deletions     *prometheus.CounterVec
	pvs           *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		retainedDirs: prometheus.NewGauge(prometheus.GaugeOpts{Name: api.MetricGCRetainedDirectories,
			Help: "Unpublished pod directories kept on this node (retention not expired, archive pending, or kept by disk-pressure order)."}),
		retainedBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: api.MetricGCRetainedBytes,
			Help: "Bytes allocated by the retained pod directories, as the usage tracker counts them (0 until its first walk after a start has ended; a directory it has no figure for is measured every 30 to 60 minutes)."}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{Name: api.MetricGCOldestRetainedSeconds,
			Help: "Age of the oldest retained pod directory since its retention clock started (0 when none)."}),
		usedRatio: prometheus.NewGauge(prometheus.GaugeOpts{Name: api.MetricGCDiskUsedRatio,
			Help: "Share of the root's filesystem in use (0..1, as df computes it) after the last pass."}),
		inodesRatio: prometheus.NewGauge(prometheus.GaugeOpts{Name: api.MetricGCInodesUsedRatio,
			Help: "Share of the root filesystem's inodes in use (0..1, as df -i computes it) after the last pass."}),
		shares: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: api.MetricRootSharesFilesystem,
			Help: "1 when keeplog's root is on the same filesystem (st_dev) as the directory named by with (kubelet: its root dir; pod-logs: its container logs; runtime: the container runtime's directory), whose eviction and image garbage collection then act on the same disk."}, []string{"with"}),
		deletions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: api.MetricGCDeletionsTotal,
			Help: "Pod directories deleted by the garbage collector, by reason (retention, disk_pressure, inode_pressure)."}, []string{"reason"}),
		pvs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: api.MetricGCPVCleanupsTotal,
			Help: "PVs the garbage collector let go: released (reclaim policy set to Delete), node_gone (deleted by the leader)."}, []string{"reason"}),
	}
	for _, r := range []string{CauseRetention, CauseDiskPressure, CauseInodePressure} {
		m.deletions.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.retainedDirs, m.retainedBytes, m.oldest, m.usedRatio, m.inodesRatio, m.shares, m.deletions, m.pvs} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	return m, nil
}

// observe sets the gauges after a pass. The retained directories' sizes are the usage tracker's (Deps.Sizes), asked
// for all of them at once, which costs nothing; a directory it has no figure for is measured by the collector itself,
// again when that is stale. While the tracker's first walk runs it has no figures yet: the bytes gauge then stays as
// it was until a later pass, rather than this pass walking every retained directory beside that walk.
func (g *GC) observe(inv *inventory, now time.Time, res *Result) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var n int
	var oldest time.Duration
	dirs := make([]string, 0, len(inv.candidates))
	for _, c := range inv.candidates {
		if c.gone {
			continue
		}
		n++
		oldest = max(oldest, now.Sub(c.start))
		dirs = append(dirs, c.dir)
	}
	if bytes, ok := g.retainedBytes(dirs, now); ok {
		g.metrics.retainedBytes.Set(float64(bytes))
	}
	res.Retained = n
	g.metrics.retainedDirs.Set(float64(n))
	g.metrics.oldest.Set(oldest.Seconds())
	g.metrics.usedRatio.Set(res.UsedPercent / 100)
	g.metrics.inodesRatio.Set(res.InodesUsedPercent / 100)
}

// retainedBytes is what the retained directories hold; false while the tracker has no figures yet. Called with mu.
func (g *GC) retainedBytes(dirs []string, now time.Time) (int64, bool) {
	var bytes int64
	unknown := dirs
	if g.sizer != nil {
		var ready bool
		if bytes, unknown, ready = g.sizer.SumDirBytes(dirs); !ready {
			return 0, false
		}
	}
	seen := make(map[string]bool, len(unknown))
	var stale []string
	for _, dir := range unknown {
		seen[dir] = true
		if s, ok := g.sizes[dir]; ok && now.Sub(s.at) < sizeTTL+jitter.Offset(dir, sizeTTL) && !now.Before(s.at) {
			bytes += s.bytes
			continue
		}
		stale = append(stale, dir)
	}
	root := g.store.Root()
	measured := make([]int64, len(stale))
	parallel(len(stale), func(i int) { measured[i], _ = dirSize(filepath.Join(root, stale[i])) })
	for i, dir := range stale {
		g.sizes[dir] = sizeEntry{bytes: measured[i], at: now}
		bytes += measured[i]
	}
	for dir := range g.sizes {
		if !seen[dir] {
			delete(g.sizes, dir)
		}
	}
	return bytes, true
}
