package gc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeArchive is an archiver whose pending directories the test sets.
type fakeArchive struct {
	mu      sync.Mutex
	pending map[string]bool
}

func (a *fakeArchive) Pending(dir string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pending[filepath.Base(dir)]
}

func (a *fakeArchive) set(dir string, p bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending[dir] = p
}

type event struct{ pod, typ, reason, msg string }

type fakeRecorder struct {
	mu     sync.Mutex
	events []event
}

func (r *fakeRecorder) PodEvent(pod store.PodRef, typ, reason, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{pod.DirName(), typ, reason, msg})
}

func (r *fakeRecorder) all() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

// fixture is a store on a temp root, a fake clock, a fake archiver and a fake disk whose use the test sets (or
// derives from what the root holds).
type fixture struct {
	t       *testing.T
	root    string
	st      *store.Store
	clk     *clocktesting.FakeClock
	archive *fakeArchive
	events  *fakeRecorder
	reg     *prometheus.Registry
	cfg     Config
	kube    kubernetes.Interface
	disk    func() (DiskUsage, error)
	sizes   DirSizes // Deps.Sizes; nil: the collector measures every retained directory itself
	n       int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	clk := clocktesting.NewFakeClock(t0)
	st, err := store.Open(root, clk)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, root: root, st: st, clk: clk, archive: &fakeArchive{pending: map[string]bool{}},
		events: &fakeRecorder{}, reg: prometheus.NewRegistry(),
		cfg: Config{Node: "node-a", DriverName: "keeplog.csi.io", Interval: time.Minute, HighWatermark: 90,
			LowWatermark: 80, HardLimit: 95, InodeHighWatermark: 90, InodeLowWatermark: 80, InodeHardLimit: 95, OrphanGrace: 24 * time.Hour, Policy: policy.Defaults{RetainFor: 7 * 24 * time.Hour, MaxRetainFor: 30 * 24 * time.Hour}},
		disk: func() (DiskUsage, error) { return DiskUsage{Size: 100, Used: 10, Avail: 90}, nil },
	}
}

func (f *fixture) gc() *GC {
	f.t.Helper()
	g, err := New(f.cfg, Deps{Store: f.st, Clock: f.clk, Archive: f.archive, Events: f.events, Registerer: f.reg,
		Kube: f.api(), Sizes: f.sizes, Statfs: func(string) (DiskUsage, error) { return f.disk() }})
	if err != nil {
		f.t.Fatal(err)
	}
	return g
}

func (f *fixture) pass(g *GC) Result {
	f.t.Helper()
	res, err := g.Pass(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return res
}

// volume records a persistent volume with the given parameters.
func (f *fixture) volume(id string, kind store.Kind, name string, params map[string]string) {
	f.t.Helper()
	if _, err := f.st.CreateVolume(&store.Volume{ID: id, Name: name, Kind: kind, Node: "node-a", Parameters: params}); err != nil && !errors.Is(err, store.ErrExists) {
		f.t.Fatal(err)
	}
}

// podDir publishes a new pod directory of the volume (with a file of size bytes), returning its name and target.
func (f *fixture) podDir(vol string, size int) (string, string) {
	f.t.Helper()
	f.n++
	ref := store.PodRef{Namespace: "ns", Name: fmt.Sprintf("pod-%d", f.n), UID: fmt.Sprintf("00000000-0000-0000-0000-%012d", f.n)}
	dir := ref.DirName()
	path, err := f.st.ClaimPodDir(vol, dir, &ref)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "app.log"), make([]byte, size), 0o644); err != nil {
		f.t.Fatal(err)
	}
	target := "/var/lib/kubelet/pods/" + ref.UID + "/volumes/x"
	if err := f.st.AddTarget(vol, store.Target{Path: target, PodDir: dir}); err != nil {
		f.t.Fatal(err)
	}
	return dir, target
}

func (f *fixture) unpublish(vol, target string) {
	f.t.Helper()
	if err := f.st.RemoveTarget(vol, target); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) exists(dir string) bool {
	_, err := os.Lstat(filepath.Join(f.root, dir))
	return err == nil
}

func (f *fixture) wantExists(dir string, want bool, when string) {
	f.t.Helper()
	if got := f.exists(dir); got != want {
		f.t.Fatalf("%s: directory %s exists=%v, want %v", when, dir, got, want)
	}
}

func deletedDirs(res Result) []string {
	var out []string
	for _, d := range res.Deleted {
		out = append(out, d.Dir)
	}
	return out
}

// api is the fixture's fake clientset as the collector's API; nil when the test gave none (no API access).
func (f *fixture) api() *API {
	if f.kube == nil {
		return nil
	}
	return fakeAPI(f.kube)
}

// fakeAPI is a fake clientset's PV and node clients as the collector's API.
func fakeAPI(cs kubernetes.Interface) *API {
	return &API{PVs: cs.CoreV1().PersistentVolumes(), Nodes: cs.CoreV1().Nodes()}
}
