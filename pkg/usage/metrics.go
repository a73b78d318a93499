package usage

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keeplog/keeplog/pkg/api"
)

type metrics struct {
	t             *Tracker
	used, inodes  *prometheus.Desc
	limit, over   *prometheus.Desc
	blocked       *prometheus.Desc
	walks         prometheus.Counter
	walkSeconds   prometheus.Histogram
	overflows     prometheus.Counter
	exceeded      *prometheus.CounterVec
	enforceErrors *prometheus.CounterVec
}

// newMetrics registers the Tracker's metrics. The per-volume gauges are read from the Tracker at each scrape, so a
// deleted volume's series goes away with it; they are those of published volumes (and of any over its limit or
// blocked), not of every retained one.
func newMetrics(t *Tracker, reg prometheus.Registerer) (*metrics, error) {
	vol := []string{"volume"}
	m := &metrics{t: t,
		used:    prometheus.NewDesc(api.MetricVolumeUsedBytes, "Bytes allocated by the volume's pod directories (as du counts them).", vol, nil),
		inodes:  prometheus.NewDesc(api.MetricVolumeUsedInodes, "Files and directories in the volume's pod directories.", vol, nil),
		limit:   prometheus.NewDesc(api.MetricVolumeLimitBytes, "The volume's limit: its requested capacity (or the size attribute of a CSI inline volume). Absent when it has none.", vol, nil),
		over:    prometheus.NewDesc(api.MetricVolumeOverLimit, "1 while the volume uses more than its limit.", vol, nil),
		blocked: prometheus.NewDesc(api.MetricVolumeBlockedDirectories, "Pod directories of the volume whose writes are blocked now (limitAction block).", vol, nil),
		walks:   prometheus.NewCounter(prometheus.CounterOpts{Name: api.MetricUsageWalksTotal, Help: "Walks: the full one at start or after lost events, and the periodic ones (every published pod directory and a sixtieth of the retained ones)."}),
		walkSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: api.MetricUsageWalkDurationSeconds,
			Help: "How long measuring one pod directory took.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}),
		overflows: prometheus.NewCounter(prometheus.CounterOpts{Name: api.MetricUsageEventOverflowsTotal,
			Help: "Times file events were lost (inotify queue overflow) and everything was walked again."}),
		exceeded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: api.MetricVolumeLimitExceededTotal,
			Help: "Times the volume went over its limit."}, vol),
		enforceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: api.MetricUsageEnforceErrorsTotal,
			Help: "Failed attempts to block or unblock a pod directory."}, []string{"operation"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m, m.walks, m.walkSeconds, m.overflows, m.exceeded, m.enforceErrors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register usage metrics: %w", err)
		}
	}
	return m, nil
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.used, m.inodes, m.limit, m.over, m.blocked} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	t := m.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.started {
		return
	}
	for id, v := range t.vols {
		s := t.statusLocked(v)
		if len(v.published) == 0 && !v.over && len(s.Blocked) == 0 {
			// Retained: a node keeps thousands (five series each were 50,000 at 10,000, rebuilt at every scrape);
			// their bytes are keeplog_gc_retained_bytes. Over its limit or blocked, it still shows.
			continue
		}
		ch <- prometheus.MustNewConstMetric(m.used, prometheus.GaugeValue, float64(s.Bytes), id)
		ch <- prometheus.MustNewConstMetric(m.inodes, prometheus.GaugeValue, float64(s.Inodes), id)
		if v.limit > 0 {
			ch <- prometheus.MustNewConstMetric(m.limit, prometheus.GaugeValue, float64(v.limit), id)
		}
		over := 0.0
		if v.over {
			over = 1
		}
		ch <- prometheus.MustNewConstMetric(m.over, prometheus.GaugeValue, over, id)
		ch <- prometheus.MustNewConstMetric(m.blocked, prometheus.GaugeValue, float64(len(s.Blocked)), id)
	}
}
