package dump

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
)

// fakeEvents records Events as "Type Reason: message".
type fakeEvents struct {
	mu  sync.Mutex
	all []string
}

func (f *fakeEvents) PodEvent(_ store.PodRef, typ, reason, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.all = append(f.all, typ+" "+reason+": "+msg)
}

// count returns how many events have the reason.
func (f *fakeEvents) count(reason string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, e := range f.all {
		if strings.Contains(e, " "+reason+": ") {
			n++
		}
	}
	return n
}

func (f *fakeEvents) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.all, "\n")
}

// fakeMemory returns the same reading for every container.
type fakeMemory struct {
	mu  sync.Mutex
	mem Memory
	err error
}

func (f *fakeMemory) Read(string, string) (Memory, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mem, f.err
}

func (f *fakeMemory) set(ws, limit uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mem = Memory{WorkingSet: ws, Limit: limit, Cgroup: "/fake"}
}

// fakeSem is a semaphore of one slot that records whether it is held.
type fakeSem struct {
	mu      sync.Mutex
	held    bool
	refuse  bool
	acquire int
}

func (s *fakeSem) AcquireWithin(ctx context.Context, _ time.Duration) (context.Context, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse || s.held {
		return nil, nil, fmt.Errorf("all 1 slots taken: %w", context.DeadlineExceeded)
	}
	s.held = true
	s.acquire++
	return ctx, func() { s.mu.Lock(); s.held = false; s.mu.Unlock() }, nil
}

func (s *fakeSem) isHeld() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.held }

// env is a Manager on a temp root with one opted-in pod whose HTTP endpoint writes a dump file into its directory.
type env struct {
	t       *testing.T
	m       *Manager
	clk     *clocktesting.FakeClock
	events  *fakeEvents
	mem     *fakeMemory
	sem     *fakeSem
	root    string
	podDir  string
	pod     *corev1.Pod
	podMu   sync.Mutex
	hits    atomic.Int32
	status  atomic.Int32 // HTTP status the endpoint answers; 0: 200
	noFile  atomic.Bool  // the endpoint answers but writes nothing
	pending atomic.Bool  // the archiver has work for the pod directory
	asked   atomic.Int32 // how often Pending was asked (each is a walk of the pod directory)
	free    atomic.Uint64
	cfg     Config
}

func newEnv(t *testing.T, ann map[string]string, tweak func(*Config, *Deps)) *env {
	t.Helper()
	e := &env{t: t, clk: clocktesting.NewFakeClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)), events: &fakeEvents{},
		mem: &fakeMemory{}, sem: &fakeSem{}, root: t.TempDir()}
	e.free.Store(1 << 40)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := e.hits.Add(1)
		if s := e.status.Load(); s != 0 {
			http.Error(w, "no dump for you", int(s))
			return
		}
		if r.Method != http.MethodPost || r.URL.Path != "/dump" {
			http.Error(w, r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		if !e.noFile.Load() {
			f := filepath.Join(e.podDir, "app", fmt.Sprintf("heap-%d.hprof", n))
			if err := os.WriteFile(f, []byte("JAVA PROFILE 1.0.2"), 0o644); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		fmt.Fprintln(w, "dumped")
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	all := map[string]string{api.AnnotationDumpPort: port, api.AnnotationDumpPath: "/dump"}
	for k, v := range ann {
		all[k] = v
	}
	e.pod = testPod(all, "app")
	e.pod.Status.PodIP = "127.0.0.1"
	e.pod.Status.Phase = corev1.PodRunning
	e.pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", ContainerID: "containerd://" + testCID,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	ref := store.PodRef{Namespace: e.pod.Namespace, Name: e.pod.Name, UID: string(e.pod.UID)}
	e.podDir = filepath.Join(e.root, ref.DirName())
	if err := os.MkdirAll(filepath.Join(e.podDir, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.cfg = Config{Root: e.root, StateDir: filepath.Join(e.root, ".keeplog", "dumps"), PollInterval: time.Second,
		Cooldown: 5 * time.Minute, Timeout: 30 * time.Second, SlotWait: time.Second, QuietPeriod: 3 * time.Second}
	deps := e.deps()
	if tweak != nil {
		tweak(&e.cfg, &deps)
	}
	e.m = e.newManager(deps)
	return e
}

func (e *env) deps() Deps {
	return Deps{
		Pods: func(ref store.PodRef) (*corev1.Pod, bool) {
			e.podMu.Lock()
			defer e.podMu.Unlock()
			if e.pod == nil || string(e.pod.UID) != ref.UID {
				return nil, false
			}
			return e.pod.DeepCopy(), true
		},
		Memory: e.mem, Events: e.events, Semaphore: e.sem,
		Archive: func(string) policy.ArchivePolicy { return policy.ArchivePolicy{} },
		Pending: func(string) bool { e.asked.Add(1); return e.pending.Load() },
		FreeBytes: func(string) (uint64, error) {
			return e.free.Load(), nil
		},
		Clock: e.clk, Log: klog.Background(),
	}
}

func (e *env) newManager(deps Deps) *Manager {
	m, err := New(e.cfg, deps)
	if err != nil {
		e.t.Fatal(err)
	}
	m.Observe(e.currentPod())
	return m
}

func (e *env) currentPod() *corev1.Pod {
	e.podMu.Lock()
	defer e.podMu.Unlock()
	return e.pod.DeepCopy()
}

func (e *env) annotate(k, v string) {
	e.podMu.Lock()
	e.pod.Annotations[k] = v
	p := e.pod.DeepCopy()
	e.podMu.Unlock()
	e.m.Observe(p)
}

// poll runs one check and lets any dump it started run to its end, stepping the fake clock by a second at a time.
func (e *env) poll() {
	e.t.Helper()
	e.m.check(context.Background())
	e.settle()
}

func (e *env) settle() {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for e.busy() {
		if time.Now().After(deadline) {
			e.t.Fatalf("dump still under way after 20s; events:\n%s", e.events)
		}
		e.clk.Step(time.Second)
		time.Sleep(2 * time.Millisecond)
	}
}

func (e *env) busy() bool {
	e.m.mu.Lock()
	defer e.m.mu.Unlock()
	for _, t := range e.m.pods {
		if t.busy {
			return true
		}
	}
	return false
}

func (e *env) decisions(d string) int {
	var out dto.Metric
	if err := e.m.m.decisions.WithLabelValues(d).Write(&out); err != nil {
		e.t.Fatal(err)
	}
	return int(out.GetCounter().GetValue())
}

// expect checks the HTTP endpoint's hits and the decision counts so far.
func (e *env) expect(hits int, counts map[string]int) {
	e.t.Helper()
	if got := int(e.hits.Load()); got != hits {
		e.t.Fatalf("endpoint asked %d times, want %d; events:\n%s", got, hits, e.events)
	}
	for d, want := range counts {
		if got := e.decisions(d); got != want {
			e.t.Fatalf("decision %s counted %d, want %d; events:\n%s", d, got, want, e.events)
		}
	}
}

const mi = 1 << 20

func TestThresholdFirstOnlyAndRearm(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.mem.set(79*mi, 100*mi)
	e.poll()
	e.expect(0, map[string]int{DecisionTriggered: 0})

	e.mem.set(80*mi, 100*mi) // at the threshold counts
	e.poll()
	e.expect(1, map[string]int{DecisionTriggered: 1, DecisionFinished: 1})
	if n := e.events.count(api.ReasonDumpFinished); n != 1 || !strings.Contains(e.events.String(), "app/heap-1.hprof") {
		t.Fatalf("no DumpFinished event naming the file:\n%s", e.events)
	}
	if e.sem.isHeld() || e.sem.acquire != 1 {
		t.Fatalf("semaphore held=%v after the dump, acquired %d times", e.sem.isHeld(), e.sem.acquire)
	}

	// Still above, long after the cooldown: firstOnly — reported once for the whole crossing, never dumped.
	for range 5 {
		e.clk.Step(10 * time.Minute)
		e.poll()
	}
	e.expect(1, map[string]int{DecisionTriggered: 1, DecisionSkipFirstOnly: 1})

	// Below and above again: a new crossing, reported again, still not dumped.
	e.mem.set(10*mi, 100*mi)
	e.poll()
	e.mem.set(95*mi, 100*mi)
	e.poll()
	e.expect(1, map[string]int{DecisionSkipFirstOnly: 2})

	// A restart remembers firstOnly.
	e.m = e.newManager(e.deps())
	e.poll()
	e.expect(1, map[string]int{DecisionTriggered: 0, DecisionSkipFirstOnly: 1})

	// Re-armed: the next poll above dumps again; the value is remembered, so a second poll does not re-arm again.
	e.annotate(api.AnnotationDumpRearm, "1")
	e.poll()
	e.poll()
	e.expect(2, map[string]int{DecisionTriggered: 1, DecisionFinished: 1})
	if e.events.count(api.ReasonDumpRearmed) != 1 {
		t.Fatalf("want one DumpRearmed event:\n%s", e.events)
	}
}

func TestCooldownWithoutFirstOnly(t *testing.T) {
	e := newEnv(t, map[string]string{api.AnnotationDumpFirstOnly: "false", api.AnnotationDumpThreshold: "50"}, nil)
	e.mem.set(60*mi, 100*mi)
	e.poll()
	e.expect(1, map[string]int{DecisionTriggered: 1})
	for range 3 {
		e.clk.Step(time.Minute)
		e.poll()
	}
	e.expect(1, map[string]int{DecisionSkipCooldown: 1})
	e.clk.Step(2 * time.Minute) // > 5m since the dump
	e.poll()
	e.expect(2, map[string]int{DecisionTriggered: 2, DecisionSkipCooldown: 1})
}

func TestManualRequest(t *testing.T) {
	e := newEnv(t, map[string]string{api.AnnotationDumpRequested: "from-the-template"}, nil)
	e.mem.set(1*mi, 100*mi)
	// The value the pod came with is not a request.
	e.poll()
	e.expect(0, map[string]int{DecisionTriggered: 0})

	// Threshold dump, then a manual one right away: it bypasses firstOnly and the cooldown.
	e.mem.set(90*mi, 100*mi)
	e.poll()
	e.annotate(api.AnnotationDumpRequested, "please")
	e.poll()
	e.expect(2, map[string]int{DecisionTriggered: 2, DecisionFinished: 2, DecisionSkipFirstOnly: 0})
	// Acted on once.
	e.poll()
	e.poll()
	e.expect(2, map[string]int{DecisionTriggered: 2})

	// A value set while keeplog was down is acted on after the restart; the same value is not acted on twice.
	e.podMu.Lock()
	e.pod.Annotations[api.AnnotationDumpRequested] = "while-down"
	e.podMu.Unlock()
	e.m = e.newManager(e.deps())
	e.poll()
	e.expect(3, map[string]int{DecisionTriggered: 1})
	e.m = e.newManager(e.deps())
	e.poll()
	e.expect(3, map[string]int{DecisionTriggered: 0})

	// No memory limit: the watch is off (one Warning), a request still works.
	e.mem.set(90*mi, 0)
	e.poll()
	e.poll()
	e.annotate(api.AnnotationDumpRequested, "again")
	e.poll()
	e.expect(4, map[string]int{DecisionTriggered: 1})
	if e.events.count(api.ReasonDumpThresholdOff) != 1 {
		t.Fatalf("want one DumpThresholdOff event:\n%s", e.events)
	}
}

func TestLowDiskAndNoSlot(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.free.Store(99 * mi)
	e.mem.set(90*mi, 100*mi)
	e.poll()
	e.poll()
	e.expect(0, map[string]int{DecisionSkipLowDisk: 1, DecisionTriggered: 0})
	if !strings.Contains(e.events.String(), "Warning DumpSkipped") || !strings.Contains(e.events.String(), "99.0 MiB free") {
		t.Fatalf("low disk not reported as a Warning with the numbers:\n%s", e.events)
	}
	// A manual request is not exempt from the disk check, and is reported each time.
	e.annotate(api.AnnotationDumpRequested, "1")
	e.poll()
	e.expect(0, map[string]int{DecisionSkipLowDisk: 2})

	e.free.Store(100 * mi)
	e.sem.mu.Lock()
	e.sem.refuse = true
	e.sem.mu.Unlock()
	e.poll()
	e.poll()
	e.expect(0, map[string]int{DecisionSkipNoSlot: 1, DecisionTriggered: 0})

	// The slot frees up while the container is still above: the next poll dumps (the gates are evaluated again).
	e.sem.mu.Lock()
	e.sem.refuse = false
	e.sem.mu.Unlock()
	e.poll()
	e.expect(1, map[string]int{DecisionTriggered: 1, DecisionFinished: 1})
}

// TestSlotHeldUntilArchived: the cluster slot is released only once the new dump file is quiet and the archiver has
// nothing left of the pod directory.
func TestSlotHeldUntilArchived(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.pending.Store(true)
	e.mem.set(90*mi, 100*mi)
	e.m.check(context.Background())
	for e.hits.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for range 30 { // 30 s of fake time: the file is quiet long since, but not archived
		e.clk.Step(time.Second)
		time.Sleep(2 * time.Millisecond)
	}
	if !e.busy() || !e.sem.isHeld() || e.hits.Load() != 1 {
		t.Fatalf("busy=%v held=%v hits=%d: the slot must be held while the archiver has the dump", e.busy(), e.sem.isHeld(), e.hits.Load())
	}
	e.pending.Store(false)
	e.settle()
	if e.sem.isHeld() {
		t.Fatal("slot still held after the dump was archived")
	}
	e.expect(1, map[string]int{DecisionFinished: 1})
	if !strings.Contains(e.events.String(), "written and archived") {
		t.Fatalf("finished event does not say archived:\n%s", e.events)
	}
}

func TestFailedRequestAndTimeout(t *testing.T) {
	e := newEnv(t, nil, func(c *Config, _ *Deps) { c.Timeout = 300 * time.Millisecond })
	e.status.Store(http.StatusServiceUnavailable)
	e.mem.set(90*mi, 100*mi)
	e.poll()
	e.expect(1, map[string]int{DecisionFailed: 1, DecisionTriggered: 1})
	if !strings.Contains(e.events.String(), "503 Service Unavailable") || !strings.Contains(e.events.String(), "no dump for you") {
		t.Fatalf("failure event lacks the answer:\n%s", e.events)
	}
	// A failed request does not use up firstOnly: after the cooldown, the next poll tries again.
	e.status.Store(0)
	e.noFile.Store(true)
	e.clk.Step(6 * time.Minute)
	e.poll()
	e.expect(2, map[string]int{DecisionTriggered: 2, DecisionTimedOut: 1, DecisionFinished: 0})
	if !strings.Contains(e.events.String(), "no new dump file") || e.sem.isHeld() {
		t.Fatalf("timeout: held=%v\n%s", e.sem.isHeld(), e.events)
	}
}

func TestInvalidSettingsAndDeletedPod(t *testing.T) {
	e := newEnv(t, map[string]string{api.AnnotationDumpThreshold: "lots", "keeplog.csi.io/dump-treshold": "90"}, nil)
	e.mem.set(81*mi, 100*mi)
	e.poll()
	e.poll()
	if n := e.events.count(api.ReasonInvalidDumpSetting); n != 1 || !strings.Contains(e.events.String(), "dump-treshold") ||
		!strings.Contains(e.events.String(), `dump-threshold="lots"`) {
		t.Fatalf("want one InvalidDumpSetting naming both annotations:\n%s", e.events)
	}
	e.expect(1, map[string]int{DecisionTriggered: 1}) // the default 80 % applies
	state := filepath.Join(e.cfg.StateDir, filepath.Base(e.podDir)+".json")
	if _, err := os.Stat(state); err != nil {
		t.Fatal(err)
	}
	e.podMu.Lock()
	e.pod = nil
	e.podMu.Unlock()
	e.poll()
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("state of a deleted pod kept: %v", err)
	}
}

func TestNoKeeplogDirectory(t *testing.T) {
	e := newEnv(t, nil, nil)
	if err := os.RemoveAll(e.podDir); err != nil {
		t.Fatal(err)
	}
	e.mem.set(90*mi, 100*mi)
	e.poll()
	e.poll()
	e.expect(0, map[string]int{DecisionTriggered: 0})
	if e.events.count(api.ReasonDumpNotPossible) != 1 {
		t.Fatalf("want one DumpNotPossible:\n%s", e.events)
	}
}

// fakeExec records commands.
type fakeExec struct {
	mu   sync.Mutex
	cmds []string
	dir  string
}

func (f *fakeExec) Exec(_ context.Context, ns, pod, container string, cmd []string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, ns+"/"+pod+"/"+container+": "+strings.Join(cmd, " "))
	return "ok", os.WriteFile(filepath.Join(f.dir, "app", "x"+strconv.Itoa(len(f.cmds))+".hprof"), []byte("x"), 0o644)
}

func TestExec(t *testing.T) {
	ex := &fakeExec{}
	e := newEnv(t, nil, func(_ *Config, d *Deps) { d.Exec = ex })
	ex.dir = e.podDir
	e.podMu.Lock()
	delete(e.pod.Annotations, api.AnnotationDumpPort)
	delete(e.pod.Annotations, api.AnnotationDumpPath)
	e.pod.Annotations[api.AnnotationDumpExec] = "jcmd 1 GC.heap_dump /logs/app/x.hprof"
	e.podMu.Unlock()
	e.mem.set(90*mi, 100*mi)
	e.poll()
	e.expect(0, map[string]int{DecisionFinished: 1})
	if len(ex.cmds) != 1 || ex.cmds[0] != "ns/p/app: sh -c jcmd 1 GC.heap_dump /logs/app/x.hprof" {
		t.Fatalf("exec calls %q", ex.cmds)
	}

	// Without exec (no API): reported, not attempted.
	e2 := newEnv(t, map[string]string{api.AnnotationDumpFirstOnly: "false"}, func(_ *Config, d *Deps) { d.Exec = nil })
	e2.podMu.Lock()
	delete(e2.pod.Annotations, api.AnnotationDumpPort)
	e2.pod.Annotations[api.AnnotationDumpExec] = "kill -3 1"
	e2.podMu.Unlock()
	e2.mem.set(90*mi, 100*mi)
	e2.poll()
	e2.poll()
	e2.expect(0, map[string]int{DecisionSkipUnsupported: 1})
}

func TestNewRefusesBadConfig(t *testing.T) {
	_, err := New(Config{}, Deps{})
	if err == nil || !strings.Contains(err.Error(), "root and state directory are required") {
		t.Fatalf("New(empty) = %v", err)
	}
	_, err = New(Config{Root: "/r", StateDir: "/s", Cooldown: -time.Second}, Deps{Pods: func(store.PodRef) (*corev1.Pod, bool) { return nil, false }, Memory: &fakeMemory{}})
	if err == nil || !strings.Contains(err.Error(), "cooldown -1s must not be negative") {
		t.Fatalf("New(negative cooldown) = %v", err)
	}
}

func TestStatePrunedForGoneDirectories(t *testing.T) {
	root := t.TempDir()
	s := stateStore{dir: filepath.Join(root, ".keeplog", "dumps")}
	live, gone := "ns_a_"+testUID, "ns_b_11111111-2222-3333-4444-555555555555"
	if err := os.Mkdir(filepath.Join(root, live), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{live, gone} {
		if err := s.save(d, &podState{Requested: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.save("../escape", &podState{}); err == nil {
		t.Fatal("a state file outside the state directory was written")
	}
	if err := s.prune(root); err != nil {
		t.Fatal(err)
	}
	if st, found, err := s.load(live); err != nil || !found || st.Requested != "x" {
		t.Fatalf("live state: %+v %v %v", st, found, err)
	}
	if _, found, err := s.load(gone); err != nil || found {
		t.Fatalf("state of a gone directory kept: %v %v", found, err)
	}
}
