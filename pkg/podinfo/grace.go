package podinfo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/go-logr/logr"

	"github.com/keeplog/keeplog/internal/safefs"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// The stdout grace (opt-in with keeplog's --stdout-grace): kubelet deletes a pod's stdout/stderr files with the pod,
// often before a collector has read them. For every selected pod on the node, with or without a keeplog volume,
// keeplog hard-links kubelet's files into the kubelet-layout tree <root>/.pods/<ns>_<pod>_<uid>/<container>/ as soon
// as they appear (within one Poll), so kubelet's unlink leaves the inode alive under keeplog's name: nothing is copied
// while the pod runs and the tree costs no space until kubelet deletes its names. A pod is selected by the pod
// annotation api.AnnotationStdoutGrace: "true", or by the label api.AnnotationStdoutGrace=true on its namespace (an annotation "false" opts
// a pod out). Pods with a keeplog volume are left to the LogCopier (their copies are linked into the same tree).

// GraceConfig configures a Grace.
type GraceConfig struct {
	Root          string        // keeplog's --root; the tree is <Root>/.pods
	SourceRoot    string        // kubelet's pod logs ("" is /var/log/pods)
	Poll          time.Duration // how often the selected pods' log directories are looked at; <= 0: 250ms
	RetainFor     time.Duration // how long an entry is kept after its pod is gone; <= 0: 24h
	SweepInterval time.Duration // how often expired entries are deleted; <= 0: 1m
	KeepEnvValues bool
	Clock         clock.PassiveClock // nil: the real clock
}

// GraceStore is the part of the store the grace deletes through.
type GraceStore interface {
	ListPodLogs() ([]string, error)
	DeleteOrphanPodLogs(dir string) error
}

// GraceDeps are the grace's side effects.
type GraceDeps struct {
	// Log is where the grace logs (the zero Logger discards).
	Log   logr.Logger
	Store GraceStore
	// Pod is the node's pod cache (the informer): the pod of ref while it is on the node.
	Pod func(ref store.PodRef) (*corev1.Pod, bool)
	// Synced waits until Pod knows the node's pods.
	Synced func(ctx context.Context) bool
	// NamespaceLabels reads a namespace's labels; nil selects by pod annotation only.
	NamespaceLabels func(ctx context.Context, name string) (map[string]string, error)
	// Progress records that the loop is alive (liveness); nil: not recorded.
	Progress func()
}

// Grace keeps selected pods' stdout/stderr past their deletion. PodChanged is its informer handler, Run its loop.
type Grace struct {
	cfg    GraceConfig
	deps   GraceDeps
	copier *LogCopier // the fallback when the tree is on another filesystem than kubelet's files

	mu       sync.Mutex
	seen     map[string]store.PodRef // pods updated since the last poll, by directory name
	selected map[string]store.PodRef // pods whose files are being linked
	ns       map[string]nsLabels
}

type nsLabels struct {
	selected bool
	at       time.Time
}

// nsCacheFor is how long a namespace's label is trusted before it is read again.
const nsCacheFor = time.Minute

// NewGrace builds a Grace.
func NewGrace(cfg GraceConfig, deps GraceDeps) (*Grace, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.RetainFor <= 0 {
		cfg.RetainFor = 24 * time.Hour
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Minute
	}
	if !filepath.IsAbs(cfg.Root) || filepath.Clean(cfg.Root) != cfg.Root || cfg.Root == "/" {
		return nil, fmt.Errorf("grace root %q must be a clean absolute path other than /", cfg.Root)
	}
	if deps.Store == nil || deps.Pod == nil {
		return nil, errors.New("grace: Store and Pod are required")
	}
	copier, err := NewLogCopier(cfg.SourceRoot, cfg.Clock)
	if err != nil {
		return nil, err
	}
	return &Grace{cfg: cfg, deps: deps, copier: copier, seen: map[string]store.PodRef{},
		selected: map[string]store.PodRef{}, ns: map[string]nsLabels{}}, nil
}

// PodChanged is told every add and update of a pod on the node. It only notes the pod (the informer's handler must
// not wait on the API or the disk); the next poll decides.
func (g *Grace) PodChanged(pod *corev1.Pod) {
	ref := refOf(pod)
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.selected[ref.DirName()]; !ok {
		g.seen[ref.DirName()] = ref
	}
}

// Run polls until ctx ends: selects the pods noted by PodChanged, links the selected pods' files, records the pods
// gone from the node, and every SweepInterval deletes the entries whose retention has passed.
func (g *Grace) Run(ctx context.Context) {
	if g.deps.Synced != nil && !g.deps.Synced(ctx) {
		return
	}
	poll, sweep := time.NewTicker(g.cfg.Poll), time.NewTicker(g.cfg.SweepInterval)
	defer poll.Stop()
	defer sweep.Stop()
	g.Sweep(ctx)
	for {
		g.Poll(ctx)
		if g.deps.Progress != nil {
			g.deps.Progress()
		}
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			g.Sweep(ctx)
		case <-poll.C:
		}
	}
}

// Poll does one pass: selection of new pods, then the links of every selected pod.
func (g *Grace) Poll(ctx context.Context) {
	g.mu.Lock()
	seen := g.seen
	g.seen = map[string]store.PodRef{}
	g.mu.Unlock()
	for dir, ref := range seen {
		if pod, ok := g.deps.Pod(ref); ok && g.selects(ctx, pod) {
			g.mu.Lock()
			g.selected[dir] = ref
			g.mu.Unlock()
			if err := g.writePod(pod); err != nil {
				g.deps.Log.Error(err, "Could not write the pod's metadata for the stdout grace", "pod", ref.String())
			}
		}
	}
	g.mu.Lock()
	selected := make([]store.PodRef, 0, len(g.selected))
	for _, ref := range g.selected {
		selected = append(selected, ref)
	}
	g.mu.Unlock()
	for _, ref := range selected {
		g.pass(ctx, ref)
	}
}

// pass links one selected pod's files; a pod gone from the node gets a last pass and its ended file.
func (g *Grace) pass(ctx context.Context, ref store.PodRef) {
	_, onNode := g.deps.Pod(ref)
	if _, err := os.Lstat(filepath.Join(g.cfg.Root, ref.DirName())); err == nil {
		// A keeplog volume: its pod directory exists before any container starts (NodePublish comes first), so no
		// file of it was linked; the LogCopier keeps its stdout.
		g.drop(ref)
		return
	}
	if err := g.Link(ctx, ref); err != nil {
		g.deps.Log.V(2).Info("Stdout grace: link failed", "pod", ref.String(), "error", err)
	}
	if onNode {
		return
	}
	if err := g.writeEnded(ref); err != nil {
		g.deps.Log.Error(err, "Could not record the end of a pod for the stdout grace", "pod", ref.String())
	}
	g.drop(ref)
}

func (g *Grace) drop(ref store.PodRef) {
	g.mu.Lock()
	delete(g.selected, ref.DirName())
	g.mu.Unlock()
}

// selects: the pod's annotation, else its namespace's label (cached for nsCacheFor).
func (g *Grace) selects(ctx context.Context, pod *corev1.Pod) bool {
	if v, ok := pod.Annotations[api.AnnotationStdoutGrace]; ok {
		return v == "true"
	}
	if g.deps.NamespaceLabels == nil {
		return false
	}
	now := g.cfg.Clock.Now()
	g.mu.Lock()
	c, ok := g.ns[pod.Namespace]
	g.mu.Unlock()
	if ok && now.Sub(c.at) < nsCacheFor {
		return c.selected
	}
	labels, err := g.deps.NamespaceLabels(ctx, pod.Namespace)
	if err != nil {
		g.deps.Log.V(2).Info("Stdout grace: namespace labels not read", "namespace", pod.Namespace, "error", err)
		return ok && c.selected
	}
	c = nsLabels{selected: labels[api.AnnotationStdoutGrace] == "true", at: now}
	g.mu.Lock()
	g.ns[pod.Namespace] = c
	g.mu.Unlock()
	return c.selected
}

// writePod writes <root>/.pods/<dir>/pod.json (RedactPod: env values redacted unless KeepEnvValues).
func (g *Grace) writePod(pod *corev1.Pod) error {
	data, err := json.Marshal(RedactPod(pod, g.cfg.KeepEnvValues))
	if err != nil {
		return err
	}
	entry, err := openPodLogsEntry(g.cfg.Root, refOf(pod).DirName())
	if err != nil {
		return err
	}
	defer entry.Close()
	return writeFileAt(entry, api.PodLogsPodFile, append(data, '\n'))
}

// writeEnded writes <root>/.pods/<dir>/ended (the time, RFC 3339; its mtime starts the retention clock).
func (g *Grace) writeEnded(ref store.PodRef) error {
	entry, err := openPodLogsEntry(g.cfg.Root, ref.DirName())
	if err != nil {
		return err
	}
	defer entry.Close()
	if safefs.ExistsAt(entry, api.PodLogsEndedFile) {
		return nil
	}
	return writeFileAt(entry, api.PodLogsEndedFile, []byte(g.cfg.Clock.Now().UTC().Format(time.RFC3339)+"\n"))
}
