package usage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/pkg/store"
)

// du measures dirs together as du does: allocated bytes and inodes, hard links once.
func du(t *testing.T, dirs ...string) Usage {
	t.Helper()
	exec.Command("sync").Run()
	var u Usage
	for i, args := range [][]string{{"-s", "-c", "-B1"}, {"-s", "-c", "--inodes"}} {
		out, err := exec.Command("du", append(args, dirs...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("du %v %v: %v: %s", args, dirs, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		total := strings.Fields(lines[len(lines)-1])
		n, err := strconv.ParseInt(total[0], 10, 64)
		if err != nil {
			t.Fatalf("du output %q: %v", out, err)
		}
		if i == 0 {
			u.Bytes = n
		} else {
			u.Inodes = n
		}
	}
	return u
}

// fixture is a store with volumes and pod directories under a temp root, and a started Tracker.
type fixture struct {
	t      *testing.T
	st     *store.Store
	tr     *Tracker
	ctx    context.Context
	events *fakeEvents
	enf    *fakeEnforcer
	now    time.Time
	nowMu  sync.Mutex
}

func newFixture(t *testing.T, root string) *fixture {
	t.Helper()
	if root == "" {
		root = filepath.Join(t.TempDir(), "root")
	}
	f := &fixture{t: t, ctx: context.Background(), events: &fakeEvents{}, enf: &fakeEnforcer{blocked: map[string]bool{}},
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	st, err := store.Open(root, fixtureClock{f: f})
	if err != nil {
		t.Fatal(err)
	}
	f.st = st
	return f
}

// fixtureClock tells the fixture's time (f.now) and runs real tickers (the watch drain's heartbeat).
type fixtureClock struct {
	clock.RealClock
	f *fixture
}

func (c fixtureClock) Now() time.Time                  { return c.f.clock() }
func (c fixtureClock) Since(t time.Time) time.Duration { return c.f.clock().Sub(t) }

func (f *fixture) clock() time.Time {
	f.nowMu.Lock()
	defer f.nowMu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.nowMu.Lock()
	f.now = f.now.Add(d)
	f.nowMu.Unlock()
}

// volume records a volume and publishes one pod directory per pod name; it returns the directories' paths.
func (f *fixture) volume(id string, capacity int64, params map[string]string, pods ...string) []string {
	f.t.Helper()
	if _, err := f.st.CreateVolume(&store.Volume{ID: id, Kind: store.Persistent, CapacityBytes: capacity, Parameters: params, Node: "n"}); err != nil {
		f.t.Fatal(err)
	}
	var paths []string
	for _, p := range pods {
		ref := store.PodRef{Namespace: "ns", Name: p, UID: "uid-" + p}
		path, err := f.st.ClaimPodDir(id, ref.DirName(), &ref)
		if err != nil {
			f.t.Fatal(err)
		}
		if err := f.st.AddTarget(id, store.Target{Path: "/target/" + id + "/" + p, PodDir: ref.DirName()}); err != nil {
			f.t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

func (f *fixture) start(cfg Config, enforcer Enforcer) {
	f.t.Helper()
	tr, err := New(cfg, Deps{Store: f.st, Enforcer: enforcer, Events: f.events, Clock: fixtureClock{f: f}})
	if err != nil {
		f.t.Fatal(err)
	}
	if cfg.BlockGrace == 0 {
		tr.cfg.BlockGrace = 0 // the fake clock stands still: no grace unless a test asks for one
	}
	stop, err := tr.start(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(stop)
	f.tr = tr
}

// waitUsage flushes until the volume's usage equals want (events arrive asynchronously) or fails after 5 s.
func (f *fixture) waitUsage(t *testing.T, id string, want Usage) {
	t.Helper()
	var got Status
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		f.tr.flush(f.ctx)
		got, _ = f.tr.Status(id)
		if got.Usage == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("volume %s: tracked usage %+v, du says %+v", id, got.Usage, want)
}

func writeFile(t *testing.T, path string, size int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path string, size int) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
}

type fakeEvents struct {
	mu  sync.Mutex
	log []string
}

func (e *fakeEvents) PodEvent(pod store.PodRef, eventType, reason, message string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.log = append(e.log, fmt.Sprintf("%s %s %s: %s", pod.Name, eventType, reason, message))
}

// reasons returns "pod reason" for each event so far.
func (e *fakeEvents) reasons() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, l := range e.log {
		f := strings.Fields(l)
		out = append(out, f[0]+" "+strings.TrimSuffix(f[2], ":"))
	}
	return out
}

type fakeEnforcer struct {
	mu      sync.Mutex
	blocked map[string]bool
	calls   []string
}

func (e *fakeEnforcer) Name() string { return "fake" }
func (e *fakeEnforcer) Block(dir string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.blocked[dir] = true
	e.calls = append(e.calls, "block "+filepath.Base(dir))
	return nil
}
func (e *fakeEnforcer) Unblock(dir string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.blocked, dir)
	e.calls = append(e.calls, "unblock "+filepath.Base(dir))
	return nil
}
func (e *fakeEnforcer) Blocked() ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for d := range e.blocked {
		out = append(out, d)
	}
	return out, nil
}
func (e *fakeEnforcer) isBlocked(dir string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.blocked[dir]
}
