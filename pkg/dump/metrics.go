package dump

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keeplog/keeplog/pkg/api"
)

// Decisions, the label values of keeplog_dump_decisions_total.
const (
	DecisionTriggered       = "triggered"           // the pod was asked for a dump
	DecisionFinished        = "finished"            // the dump file is written (and archived, with an archiver)
	DecisionFailed          = "failed"              // the request failed (HTTP status, exec error)
	DecisionTimedOut        = "timed_out"           // no finished dump file within --dump-timeout
	DecisionSkipFirstOnly   = "skipped_first_only"  // the container was dumped already (firstOnly) and not re-armed
	DecisionSkipCooldown    = "skipped_cooldown"    // the container was dumped less than --dump-cooldown ago
	DecisionSkipLowDisk     = "skipped_low_disk"    // the root's free space is below the container's memory limit
	DecisionSkipNoSlot      = "skipped_no_slot"     // no cluster-wide dump slot within --dump-slot-wait
	DecisionSkipUnsupported = "skipped_unsupported" // the pod asks for exec and this node cannot exec
)

var decisions = []string{DecisionTriggered, DecisionFinished, DecisionFailed, DecisionTimedOut, DecisionSkipFirstOnly,
	DecisionSkipCooldown, DecisionSkipLowDisk, DecisionSkipNoSlot, DecisionSkipUnsupported}

type metrics struct {
	decisions  *prometheus.CounterVec
	inProgress prometheus.Gauge
	watched    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: api.MetricDumpDecisionsTotal,
			Help: "Heap dump decisions on this node: triggered, finished, failed, timed_out and skipped_* (why)."},
			[]string{"decision"}),
		inProgress: prometheus.NewGauge(prometheus.GaugeOpts{Name: api.MetricDumpInProgress,
			Help: "Heap dumps of this node's pods being taken (from the request until the file is finished and archived)."}),
		watched: prometheus.NewGauge(prometheus.GaugeOpts{Name: api.MetricDumpWatchedContainers,
			Help: "Containers on this node whose memory is watched for a dump threshold."}),
	}
	for _, d := range decisions {
		m.decisions.WithLabelValues(d)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.decisions, m.inProgress, m.watched} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
