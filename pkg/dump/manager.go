// Package dump takes heap dumps of this node's pods on demand and under memory pressure.
//
// A pod opts in with annotations (see annotations.go): how to ask it for a dump (an HTTP request to the pod, or a
// command run in it through the exec subresource), which container's memory to watch and the threshold in percent
// of that container's memory limit. The Manager reads each watched container's working set from the node's cgroup
// files every PollInterval; crossing the threshold, or a new value of the dump-requested annotation, asks the pod for
// a dump, through gates: firstOnly per container (re-armed by dump-rearm), a cooldown, a free-disk check and a
// cluster-wide semaphore that is held until the dump file is finished and archived. Every decision is an Event on the
// pod and a count in keeplog_dump_decisions_total.
//
// The dump itself is written by the application into its keeplog volume, so it flows through the archiver as any
// other dump.
package dump

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/liveness"
	"github.com/keeplog/keeplog/internal/units"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
)

// Defaults of Config.
const (
	DefaultPollInterval = 2 * time.Second
	DefaultCooldown     = 5 * time.Minute
	DefaultTimeout      = 10 * time.Minute
	DefaultSlotWait     = time.Minute
	DefaultQuietPeriod  = 5 * time.Second
)

// Config configures the Manager.
type Config struct {
	// Root is keeplog's root, which holds the pod directories (required).
	Root string
	// StateDir holds one state file per pod directory (required; <root>/.keeplog/dumps).
	StateDir string
	// PollInterval between memory reads of the watched containers.
	PollInterval time.Duration
	// Cooldown after a container's dump during which memory pressure does not dump it again.
	Cooldown time.Duration
	// Timeout bounds a dump from the request until its file is finished and archived; the cluster slot is released
	// then at the latest.
	Timeout time.Duration
	// SlotWait bounds the wait for a cluster-wide dump slot; then the dump is skipped (and, under memory pressure,
	// tried again at a later poll).
	SlotWait time.Duration
	// QuietPeriod a new dump file must stay unchanged to count as written.
	QuietPeriod time.Duration
	// HostNetworkAddress is the address HTTP requests to hostNetwork pods go to: keeplog runs in the node's network
	// namespace, so "127.0.0.1" reaches them, also endpoints bound to loopback only. Empty: the pod IP.
	HostNetworkAddress string
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.PollInterval, DefaultPollInterval)
	def(&c.Cooldown, DefaultCooldown)
	def(&c.Timeout, DefaultTimeout)
	def(&c.SlotWait, DefaultSlotWait)
	def(&c.QuietPeriod, DefaultQuietPeriod)
}

// Recorder sends Events on pods (*kube.Events implements it).
type Recorder interface {
	PodEvent(pod store.PodRef, eventType, reason, message string)
}

// Semaphore is the cluster-wide dump limit (*semaphore.Semaphore). The returned context ends when the slot is lost.
type Semaphore interface {
	// AcquireWithin holds a slot for the life of ctx, waiting at most maxWait for one.
	AcquireWithin(ctx context.Context, maxWait time.Duration) (context.Context, func(), error)
}

// MemoryReader reads a container's memory (*CgroupReader).
type MemoryReader interface {
	Read(podUID, containerID string) (Memory, error)
}

// Execer runs a command in a container and returns its combined output.
type Execer interface {
	Exec(ctx context.Context, namespace, pod, container string, command []string) (string, error)
}

// Deps are the Manager's collaborators.
type Deps struct {
	// Pods returns this node's pod of ref, only when its UID matches (required; kube.NodePods.Get).
	Pods func(store.PodRef) (*corev1.Pod, bool)
	// Memory reads containers' memory (required).
	Memory MemoryReader
	// Events on pods; nil records none.
	Events Recorder
	// Semaphore is the cluster-wide dump limit; nil: none.
	Semaphore Semaphore
	// Archive returns the archive policy of a pod directory (name), whose patterns say which files are dumps; nil:
	// the archiver's default patterns, not archived.
	Archive func(podDir string) policy.ArchivePolicy
	// Pending reports files of a pod directory (path) still to be archived; nil without an archiver.
	Pending func(podDir string) bool
	// Exec runs dump-exec commands; nil: pods that ask for exec are told it is not possible.
	Exec Execer
	// HTTP sends dump-port requests; nil: a client without a timeout of its own (the dump's context bounds it).
	HTTP *http.Client
	// FreeBytes returns the free space of the filesystem holding path; nil: statfs.
	FreeBytes func(path string) (uint64, error)
	// Clock; nil: the real clock.
	Clock clock.WithTicker
	// Registerer for the metrics; nil: not registered.
	Registerer prometheus.Registerer
	Log        logr.Logger
	// Liveness records the poll loop's progress (each poll, each pod looked at, and a heartbeat while it waits),
	// so that /healthz fails when the loop is wedged; nil records nothing. Dumps run outside the loop.
	Liveness *liveness.Loop
}

// Manager watches the opted-in pods of its node and takes their dumps.
type Manager struct {
	cfg    Config
	deps   Deps
	states stateStore
	m      *metrics
	poke   chan struct{}
	wg     sync.WaitGroup

	mu   sync.Mutex
	pods map[string]*tracked // by pod directory name
	seen map[string]bool     // container IDs read during the current check
}

// tracked is one opted-in pod.
type tracked struct {
	ref    store.PodRef
	dir    string
	st     *podState // nil until loaded
	busy   bool      // a dump is under way
	warned string    // the warnings last reported
	// once-per-condition reports, cleared when the condition ends
	noDirWarned, noLimitWarned bool
	readErr                    string
	above                      bool            // the watched container was above its threshold at the last poll
	reported                   map[string]bool // skip decisions reported during the current crossing
}

// New checks the configuration.
func New(cfg Config, deps Deps) (*Manager, error) {
	cfg.setDefaults()
	var errs []error
	if cfg.Root == "" || cfg.StateDir == "" {
		errs = append(errs, errors.New("root and state directory are required"))
	}
	if deps.Pods == nil || deps.Memory == nil {
		errs = append(errs, errors.New("pods and memory reader are required"))
	}
	for name, d := range map[string]time.Duration{"poll interval": cfg.PollInterval, "cooldown": cfg.Cooldown,
		"timeout": cfg.Timeout, "slot wait": cfg.SlotWait, "quiet period": cfg.QuietPeriod} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s must not be negative", name, d))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("heap dumps: %w", errors.Join(errs...))
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	if deps.HTTP == nil {
		deps.HTTP = &http.Client{}
	}
	if deps.FreeBytes == nil {
		deps.FreeBytes = freeBytes
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg, deps: deps, states: stateStore{dir: cfg.StateDir}, m: m, poke: make(chan struct{}, 1),
		pods: map[string]*tracked{}}, nil
}

// Observe is called with every added or updated pod of the node (kube.NodePods.OnChange). Pods that opted in are
// watched from then on; a change of their annotations is acted on at once.
func (m *Manager) Observe(pod *corev1.Pod) {
	ref := store.PodRef{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}
	dir := ref.DirName()
	m.mu.Lock()
	_, known := m.pods[dir]
	if !known && (OptedIn(pod.Annotations) || len(unknownDumpAnnotations(pod.Annotations)) > 0) {
		if err := ref.Validate(); err == nil {
			m.pods[dir] = &tracked{ref: ref, dir: dir}
			known = true
		}
	}
	m.mu.Unlock()
	if known {
		select {
		case m.poke <- struct{}{}:
		default:
		}
	}
}

// Run polls until ctx ends, then waits for the dumps under way to stop.
func (m *Manager) Run(ctx context.Context) error {
	if err := m.states.prune(m.cfg.Root); err != nil {
		m.deps.Log.Error(err, "Could not remove the dump state of deleted pod directories")
	}
	t := m.deps.Clock.NewTicker(m.cfg.PollInterval)
	defer t.Stop()
	hb := m.deps.Clock.NewTicker(m.deps.Liveness.Heartbeat())
	defer hb.Stop()
	for {
		m.deps.Liveness.Progress()
		m.check(ctx)
		m.deps.Liveness.Progress()
		select {
		case <-ctx.Done():
			m.wg.Wait()
			return nil
		case <-t.C():
		case <-m.poke:
		case <-hb.C():
		}
	}
}

// check looks at every tracked pod once.
func (m *Manager) check(ctx context.Context) {
	m.mu.Lock()
	dirs := make([]string, 0, len(m.pods))
	for d := range m.pods {
		dirs = append(dirs, d)
	}
	m.mu.Unlock()
	watched := 0
	m.seen = map[string]bool{}
	for _, d := range dirs {
		if m.checkPod(ctx, d) {
			watched++
		}
		m.deps.Liveness.Progress()
	}
	m.m.watched.Set(float64(watched))
	if f, ok := m.deps.Memory.(interface{ Forget(keep map[string]bool) }); ok {
		f.Forget(m.seen) // containers gone or restarted under a new ID
	}
}

// checkPod evaluates one pod; it returns whether its memory is being watched.
func (m *Manager) checkPod(ctx context.Context, dir string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.pods[dir]
	if t == nil {
		return false
	}
	pod, ok := m.deps.Pods(t.ref)
	if !ok { // deleted: forget it
		delete(m.pods, dir)
		if !t.busy {
			if err := m.states.remove(dir); err != nil {
				m.deps.Log.Error(err, "Could not remove the dump state of a deleted pod", "pod", t.ref.String())
			}
		}
		return false
	}
	spec, warns, ok := ParseSpec(pod)
	if msg := errors.Join(warns...); msg != nil && msg.Error() != t.warned {
		t.warned = msg.Error()
		m.event(t.ref, corev1.EventTypeWarning, api.ReasonInvalidDumpSetting, msg.Error())
	} else if msg == nil {
		t.warned = ""
	}
	if !ok || pod.DeletionTimestamp != nil {
		return false
	}
	if _, err := os.Stat(filepath.Join(m.cfg.Root, dir)); err != nil {
		if pod.Status.Phase == corev1.PodRunning && !t.noDirWarned {
			t.noDirWarned = true
			m.event(t.ref, corev1.EventTypeWarning, api.ReasonDumpNotPossible,
				"the pod asks for heap dumps but has no keeplog volume on this node: nowhere to keep them")
		}
		return false
	}
	if t.st == nil {
		st, found, err := m.states.load(dir)
		if err != nil {
			m.deps.Log.Error(err, "Could not read the pod's dump state", "pod", t.ref.String())
			return false
		}
		if !found { // first sight: the values the pod came with are not requests
			st.Requested, st.Rearm = spec.Requested, spec.Rearm
			m.save(t, st)
		}
		t.st = st
	}
	if spec.Rearm != t.st.Rearm {
		t.st.Rearm = spec.Rearm
		for _, c := range t.st.Containers {
			c.Dumped = false
		}
		m.save(t, t.st)
		t.reported = nil
		m.event(t.ref, corev1.EventTypeNormal, api.ReasonDumpRearmed, fmt.Sprintf("%s=%q: firstOnly re-armed; the next memory pressure dumps again", api.AnnotationDumpRearm, spec.Rearm))
	}
	if t.busy {
		return spec.Method != "" // a new request waits until this dump is done
	}
	if spec.Requested != t.st.Requested {
		t.st.Requested = spec.Requested // consumed before acting: a crash must not make it a loop
		m.save(t, t.st)
		m.start(ctx, t, pod, spec, trigger{manual: true, why: fmt.Sprintf("requested (%s=%q)", api.AnnotationDumpRequested, spec.Requested)})
		return true
	}
	return m.checkMemory(ctx, t, pod, spec)
}

// checkMemory reads the watched container's working set and dumps when it is above the threshold and the gates
// allow. Skips are reported once per crossing; the gates are evaluated again at each poll.
func (m *Manager) checkMemory(ctx context.Context, t *tracked, pod *corev1.Pod, spec Spec) bool {
	cid := ContainerID(pod, spec.Container)
	if cid == "" {
		return false // not running (yet)
	}
	m.seen[cid] = true
	mem, err := m.deps.Memory.Read(string(pod.UID), cid)
	if err != nil {
		if err.Error() != t.readErr {
			t.readErr = err.Error()
			m.deps.Log.Error(err, "Could not read a watched container's memory", "pod", t.ref.String(), "container", spec.Container)
		}
		return false
	}
	t.readErr = ""
	if mem.Limit == 0 {
		if !t.noLimitWarned {
			t.noLimitWarned = true
			m.event(t.ref, corev1.EventTypeWarning, api.ReasonDumpThresholdOff, fmt.Sprintf(
				"container %s has no memory limit: no dump on memory pressure (%s still works)", spec.Container, api.AnnotationDumpRequested))
		}
		return false
	}
	t.noLimitWarned = false
	if !Above(mem, spec.Threshold) {
		if t.above {
			t.above, t.reported = false, nil
		}
		return true
	}
	t.above = true
	why := fmt.Sprintf("container %s working set %s is %.0f%% of its memory limit %s (threshold %d%%)", spec.Container,
		units.Bytes(mem.WorkingSet), 100*float64(mem.WorkingSet)/float64(mem.Limit), units.Bytes(mem.Limit), spec.Threshold)
	cs := t.st.container(spec.Container)
	now := m.deps.Clock.Now()
	switch {
	case spec.FirstOnly && cs.Dumped:
		m.skip(t, false, DecisionSkipFirstOnly, why+fmt.Sprintf("; not dumped: it was dumped already (firstOnly; change %s to re-arm)", api.AnnotationDumpRearm))
	case !cs.LastDump.IsZero() && now.Sub(cs.LastDump) < m.cfg.Cooldown:
		m.skip(t, false, DecisionSkipCooldown, why+fmt.Sprintf("; not dumped yet: last dump %s ago, cooldown %s",
			now.Sub(cs.LastDump).Round(time.Second), m.cfg.Cooldown))
	default:
		m.start(ctx, t, pod, spec, trigger{mem: mem, why: why})
	}
	return true
}

// Above reports whether the working set is at or above threshold percent of the limit (false without a limit).
func Above(mem Memory, threshold int) bool {
	if mem.Limit == 0 {
		return false
	}
	// working set × 100 ≥ limit × threshold, in 128 bits: limits near 2^62 must not overflow.
	hi1, lo1 := bits.Mul64(mem.WorkingSet, 100)
	hi2, lo2 := bits.Mul64(mem.Limit, uint64(threshold))
	return hi1 > hi2 || (hi1 == hi2 && lo1 >= lo2)
}

// skip reports a skipped dump: always for a manual request, once per crossing under memory pressure. Caller holds mu.
func (m *Manager) skip(t *tracked, manual bool, decision, msg string) {
	if !manual {
		if t.reported[decision] {
			return
		}
		if t.reported == nil {
			t.reported = map[string]bool{}
		}
		t.reported[decision] = true
	}
	m.m.decisions.WithLabelValues(decision).Inc()
	typ := corev1.EventTypeNormal
	if decision == DecisionSkipLowDisk || decision == DecisionSkipNoSlot || decision == DecisionSkipUnsupported {
		typ = corev1.EventTypeWarning
	}
	m.event(t.ref, typ, api.ReasonDumpSkipped, msg)
}

func (m *Manager) save(t *tracked, st *podState) {
	if err := m.states.save(t.dir, st); err != nil {
		m.deps.Log.Error(err, "Could not record the pod's dump state", "pod", t.ref.String())
	}
}

func (m *Manager) event(ref store.PodRef, typ, reason, msg string) {
	m.deps.Log.V(2).Info("Heap dump", "pod", ref.String(), "type", typ, "reason", reason, "message", msg)
	if m.deps.Events != nil {
		m.deps.Events.PodEvent(ref, typ, reason, msg)
	}
}
