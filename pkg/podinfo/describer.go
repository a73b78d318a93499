package podinfo

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/go-logr/logr"

	"github.com/keeplog/keeplog/pkg/store"
)

// Use is one pod's use of its directory, as the node plugin sees it at publish and unpublish.
type Use struct {
	PodDir string // absolute path of <root>/<ns>_<pod>_<uid>
	Pod    PodContext
	PVName string // the PV (CreateVolume name) for StorageClass volumes; empty for CSI inline ephemeral volumes
}

// DescriberConfig configures a Describer.
type DescriberConfig struct {
	Node          string
	KeepEnvValues bool
	LogSourceRoot string             // kubelet's pod logs; "" means /var/log/pods
	FetchTimeout  time.Duration      // <= 0: DefaultFetchTimeout
	Interval      time.Duration      // how often published pods' stdout is copied and missing metadata retried; <= 0: 30s
	Clock         clock.PassiveClock // nil: the real clock
	Log           logr.Logger        // the zero Logger discards
}

// Describer puts the pod's description into its directory at publish, how it ended at unpublish, and keeps copying
// kubelet's stdout/stderr files of published pods (kubelet may delete a terminated container's logs before the
// volume is unpublished). Nothing it does can fail a publish or an unpublish: errors are logged.
type Describer struct {
	cfg       DescriberConfig
	writer    *Writer
	fetcher   *Fetcher
	copier    *LogCopier
	annotator *PVAnnotator // nil without API access

	mu        sync.Mutex
	published map[string]Use // by pod directory
	pending   map[string]Use // published pods whose metadata is still minimal
	ended     map[string]int // by pod directory: containers seen ended (endedCount) at the last ContainersChanged
	urgent    map[string]Use // published pods with a container that ended since their last copy
	kick      chan struct{}  // tells Run that urgent has entries
}

// NewDescriber builds a Describer; client may be nil (no API access: minimal metadata from the publish context only).
func NewDescriber(cfg DescriberConfig, client API) (*Describer, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	copier, err := NewLogCopier(cfg.LogSourceRoot, cfg.Clock)
	if err != nil {
		return nil, err
	}
	d := &Describer{cfg: cfg, copier: copier, fetcher: &Fetcher{Client: client, Timeout: cfg.FetchTimeout},
		published: map[string]Use{}, pending: map[string]Use{}, ended: map[string]int{}, urgent: map[string]Use{},
		kick: make(chan struct{}, 1)}
	opts := Options{KeepEnvValues: cfg.KeepEnvValues, Clock: cfg.Clock}
	if client != nil {
		opts.Owners = APIOwnerLookup(client)
		d.annotator = &PVAnnotator{Client: client}
	}
	d.writer = NewWriter(opts)
	return d, nil
}

// Published describes the pod: one bounded API read, then container directories and pod.yaml/pod.txt; when the API
// does not answer in time, minimal metadata now and the rest later from Run. Called before the bind mount, so the
// container directories exist when the containers start.
func (d *Describer) Published(ctx context.Context, u Use) {
	d.mu.Lock()
	d.published[u.PodDir] = u
	d.mu.Unlock()
	if !d.describe(ctx, u) {
		if err := d.writer.WriteMinimal(u.PodDir, u.Pod); err != nil {
			d.cfg.Log.Error(err, "Could not write minimal pod metadata", "pod", u.Pod.Pod.String())
		}
	}
}

// describe reads the pod and writes everything; false when the pod could not be read (it is then retried by Run
// unless the API said the pod is not this one or gone).
func (d *Describer) describe(ctx context.Context, u Use) bool {
	pod, err := d.fetcher.Fetch(ctx, u.Pod.Pod)
	if err != nil {
		d.mu.Lock()
		if errors.Is(err, ErrTimeout) || errors.Is(err, ErrAPI) {
			d.pending[u.PodDir] = u
		} else {
			delete(d.pending, u.PodDir)
		}
		d.mu.Unlock()
		d.cfg.Log.V(2).Info("Pod metadata not read from the API", "pod", u.Pod.Pod.String(), "reason", err)
		return false
	}
	d.mu.Lock()
	delete(d.pending, u.PodDir)
	d.mu.Unlock()
	if _, err := d.writer.EnsureContainerDirs(u.PodDir, pod); err != nil {
		d.cfg.Log.Error(err, "Could not prepare every container directory", "pod", u.Pod.Pod.String())
	}
	if err := d.writer.WritePodMetadata(ctx, u.PodDir, pod); err != nil {
		d.cfg.Log.Error(err, "Could not write pod metadata", "pod", u.Pod.Pod.String())
	}
	if u.PVName != "" && d.annotator != nil {
		if err := d.annotator.Annotate(ctx, u.PVName, u.Pod.Pod, d.cfg.Node, u.PodDir); err != nil {
			d.cfg.Log.Error(err, "Could not annotate the PV with its pod", "pv", u.PVName)
		}
	}
	return true
}

// Unpublished keeps the pod's stdout/stderr and records how each container ended.
func (d *Describer) Unpublished(ctx context.Context, u Use) {
	d.mu.Lock()
	delete(d.published, u.PodDir)
	delete(d.pending, u.PodDir)
	delete(d.ended, u.PodDir)
	delete(d.urgent, u.PodDir)
	d.mu.Unlock()
	if _, err := d.copier.Copy(ctx, u.PodDir, u.Pod.Pod); err != nil {
		d.cfg.Log.Error(err, "Could not copy the pod's stdout/stderr", "pod", u.Pod.Pod.String())
	}
	now := d.cfg.Clock.Now()
	pod, err := d.fetcher.Fetch(ctx, u.Pod.Pod)
	if err == nil {
		err = d.writer.WriteEndState(u.PodDir, pod, now)
	} else {
		err = d.writer.WriteEndStateUnavailable(u.PodDir, u.Pod.Pod, now, err)
	}
	if err != nil {
		d.cfg.Log.Error(err, "Could not record how the pod ended", "pod", u.Pod.Pod.String())
	}
}

// Run copies published pods' stdout/stderr and retries missing metadata every Interval, and copies a pod's logs
// at once when ContainersChanged saw one of its containers end, until ctx ends.
func (d *Describer) Run(ctx context.Context) {
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
			d.mu.Lock()
			urgent := make([]Use, 0, len(d.urgent))
			for _, u := range d.urgent {
				urgent = append(urgent, u)
			}
			clear(d.urgent)
			d.mu.Unlock()
			d.copyLogs(ctx, urgent)
			continue
		case <-t.C:
		}
		d.mu.Lock()
		published := make([]Use, 0, len(d.published))
		for _, u := range d.published {
			published = append(published, u)
		}
		pending := make([]Use, 0, len(d.pending))
		for _, u := range d.pending {
			pending = append(pending, u)
		}
		d.mu.Unlock()
		for _, u := range pending {
			d.describe(ctx, u)
		}
		d.copyLogs(ctx, published)
	}
}

func (d *Describer) copyLogs(ctx context.Context, uses []Use) {
	for _, u := range uses {
		if _, err := d.copier.Copy(ctx, u.PodDir, u.Pod.Pod); err != nil {
			d.cfg.Log.V(2).Info("Stdout/stderr copy failed", "pod", u.Pod.Pod.String(), "error", err)
		}
	}
}

// ContainersChanged is told every update of a pod on the node (the pod informer). When one of a published pod's
// containers has ended since the last update (a restart, or a container that terminated), Run copies the pod's
// stdout/stderr at once rather than at the next Interval: kubelet keeps the log of only the last ended instance of
// a container, so a container that restarts faster than the Interval would otherwise lose logs.
func (d *Describer) ContainersChanged(pod *corev1.Pod) {
	n := endedCount(pod)
	d.mu.Lock()
	defer d.mu.Unlock()
	name := store.PodRef{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}.DirName()
	var use Use
	for dir, u := range d.published {
		if filepath.Base(dir) == name {
			use = u
			break
		}
	}
	if use.PodDir == "" {
		return
	}
	last, seen := d.ended[use.PodDir]
	d.ended[use.PodDir] = n
	if n == 0 || seen && n <= last {
		// Nothing ended since the last update. (At the first update after publish, anything ended at all is
		// reason enough for a copy: it is incremental, so copying again is cheap.)
		return
	}
	d.urgent[use.PodDir] = use
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// endedCount counts the container instances of pod that have ended: restarts plus containers terminated now.
func endedCount(pod *corev1.Pod) int {
	n := 0
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses,
		pod.Status.EphemeralContainerStatuses} {
		for _, c := range list {
			n += int(c.RestartCount)
			if c.State.Terminated != nil {
				n++
			}
		}
	}
	return n
}

// Resume registers a pod that was published before the plugin restarted, so Run keeps copying its logs.
func (d *Describer) Resume(u Use) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.published[u.PodDir] = u
	if !HasPodMetadata(u.PodDir) {
		d.pending[u.PodDir] = u
	}
}
