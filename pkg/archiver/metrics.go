package archiver

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keeplog/keeplog/pkg/api"
)

// Upload results as counted in keeplog_archiver_uploads_total{result}.
const (
	ResultSuccess = "success" // uploaded and verified
	ResultRetry   = "retry"   // an attempt failed; it will be retried
	ResultFailed  = "failed"  // given up: the local file cannot be uploaded
	ResultSkipped = "skipped" // not uploaded by policy (firstOnly, a sparse file)
	// ResultSameContent: not uploaded, the same content (inode, size, sha256) is archived already.
	ResultSameContent = "same_content"
)

type metrics struct {
	queueDepth   prometheus.Gauge
	bytes        prometheus.Counter
	uploads      *prometheus.CounterVec
	duration     prometheus.Histogram
	settling     prometheus.Gauge
	overflows    prometheus.Counter
	statusWrites prometheus.Counter
	unwalked     *prometheus.CounterVec
	resumes      *prometheus.CounterVec
}

// Results in keeplog_archiver_upload_resumes_total{result}.
const (
	ResumeContinued = "continued" // continued after the acknowledged prefix the server held
	ResumeRestarted = "restarted" // the server did not hold it (gone, shorter, changed): started over
)

// Reasons in keeplog_archiver_unwalked_directories_total{reason}.
const (
	UnwalkedMount   = "mount"    // another mount inside a pod directory: never entered
	UnwalkedTooDeep = "too_deep" // deeper than safefs.MaxWalkDepth
)

// newMetrics creates the archiver's collectors and registers them with reg
// (none registered when reg is nil).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: api.MetricArchiverQueueDepth,
			Help: "Finished files waiting to be uploaded or being uploaded on this node.",
		}),
		settling: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: api.MetricArchiverSettlingFiles,
			Help: "Files matching the archive patterns that are not known to be finished yet.",
		}),
		overflows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: api.MetricArchiveWatchOverflowsTotal,
			Help: "Times the file watch lost events (kernel queue overflow) and the archiver rescanned every pod directory.",
		}),
		statusWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: api.MetricArchiveStatusWritesTotal,
			Help: "Archive status files written (only when a pod directory's archive state changed).",
		}),
		unwalked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: api.MetricArchiverUnwalkedDirectoriesTotal,
			Help: "Directories inside pod directories the archiver did not enter (a mount, or too deep); their pod directories are never archived, so the GC keeps them.",
		}, []string{"reason"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: api.MetricArchiverUploadResumesTotal,
			Help: "Interrupted uploads taken up again: continued after the prefix the server acknowledged, or restarted from 0 because the server did not hold it.",
		}, []string{"result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: api.MetricArchiverUploadedBytesTotal,
			Help: "Bytes sent to the archive server, as stored (compressed when compressed), including attempts that failed.",
		}),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: api.MetricArchiverUploadsTotal,
			Help: "Upload attempts by result (success, retry, failed, skipped).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    api.MetricArchiverUploadDurationSeconds,
			Help:    "Duration of successful uploads, from the first byte to the verified rename.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 16), // 0.25s .. ~2.3h
		}),
	}
	for _, r := range []string{ResumeContinued, ResumeRestarted} {
		m.resumes.WithLabelValues(r)
	}
	for _, r := range []string{UnwalkedMount, UnwalkedTooDeep} {
		m.unwalked.WithLabelValues(r)
	}
	for _, r := range []string{ResultSuccess, ResultRetry, ResultFailed, ResultSkipped, ResultSameContent} {
		m.uploads.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.queueDepth, m.settling, m.bytes, m.uploads, m.duration, m.overflows, m.statusWrites, m.unwalked, m.resumes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register archiver metrics: %w", err)
			}
		}
	}
	return m, nil
}
