package podinfo

import (
	"context"
	"errors"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
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
	LogSourceRoot string        // kubelet's pod logs; "" means /var/log/pods
	FetchTimeout  time.Duration // <= 0: DefaultFetchTimeout
	Interval      time.Duration // how often published pods' stdout is copied and missing metadata retried; <= 0: 30s
	SealDir       string
	Now           func() time.Time
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
}

// NewDescriber builds a Describer; client may be nil (no API access: minimal metadata from the publish context only).
func NewDescriber(cfg DescriberConfig, client kubernetes.Interface) (*Describer, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	copier, err := NewLogCopier(cfg.LogSourceRoot, cfg.Now)
	if err != nil {
		return nil, err
	}
	d := &Describer{cfg: cfg, copier: copier, fetcher: &Fetcher{Client: client, Timeout: cfg.FetchTimeout},
		published: map[string]Use{}, pending: map[string]Use{}}
	opts := Options{KeepEnvValues: cfg.KeepEnvValues, Now: cfg.Now, SealDir: cfg.SealDir}
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
			klog.ErrorS(err, "Could not write minimal pod metadata", "pod", u.Pod.Pod.String())
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
		klog.V(2).InfoS("Pod metadata not read from the API", "pod", u.Pod.Pod.String(), "reason", err)
		return false
	}
	d.mu.Lock()
	delete(d.pending, u.PodDir)
	d.mu.Unlock()
	if _, err := d.writer.EnsureContainerDirs(u.PodDir, pod); err != nil {
		klog.ErrorS(err, "Could not prepare every container directory", "pod", u.Pod.Pod.String())
	}
	if err := d.writer.WritePodMetadata(ctx, u.PodDir, pod); err != nil {
		klog.ErrorS(err, "Could not write pod metadata", "pod", u.Pod.Pod.String())
	}
	if u.PVName != "" && d.annotator != nil {
		if err := d.annotator.Annotate(ctx, u.PVName, u.Pod.Pod, d.cfg.Node, u.PodDir); err != nil {
			klog.ErrorS(err, "Could not annotate the PV with its pod", "pv", u.PVName)
		}
	}
	return true
}

// Unpublished keeps the pod's stdout/stderr and records how each container ended.
func (d *Describer) Unpublished(ctx context.Context, u Use) {
	d.mu.Lock()
	delete(d.published, u.PodDir)
	delete(d.pending, u.PodDir)
	d.mu.Unlock()
	if _, err := d.copier.Copy(ctx, u.PodDir, u.Pod.Pod); err != nil {
		klog.ErrorS(err, "Could not copy the pod's stdout/stderr", "pod", u.Pod.Pod.String())
	}
	now := d.cfg.Now()
	pod, err := d.fetcher.Fetch(ctx, u.Pod.Pod)
	if err == nil {
		err = d.writer.WriteEndState(u.PodDir, pod, now)
	} else {
		err = d.writer.WriteEndStateUnavailable(u.PodDir, u.Pod.Pod, now, err)
	}
	if err != nil {
		klog.ErrorS(err, "Could not record how the pod ended", "pod", u.Pod.Pod.String())
	}
}

// Run copies published pods' stdout/stderr and retries missing metadata every Interval until ctx ends.
func (d *Describer) Run(ctx context.Context) {
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
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
		for _, u := range published {
			if _, err := d.copier.Copy(ctx, u.PodDir, u.Pod.Pod); err != nil {
				klog.V(2).InfoS("Periodic stdout/stderr copy failed", "pod", u.Pod.Pod.String(), "error", err)
			}
		}
	}
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
