package archiver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/keeplog/keeplog/internal/sshdtest"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// env is one test's world: a real sshd, a root with pod directories, a
// state directory.
type env struct {
	t     testing.TB
	srv   *sshdtest.Server
	root  string
	state string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, srv: sshdtest.Start(t)}
	base := t.TempDir()
	e.root = filepath.Join(base, "root")
	e.state = filepath.Join(e.root, ".keeplog", "archiver")
	if err := os.MkdirAll(e.state, 0o755); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) target() Target {
	return Target{Host: e.srv.Host, Port: e.srv.Port, User: e.srv.User, PrivateKey: string(e.srv.ClientKeyPEM),
		KnownHosts: e.srv.KnownHostsLine + "\n", BaseDir: e.srv.RemoteDir + "/archive"}
}

func (e *env) dialer(t Target) Dialer {
	d, err := NewSSHDialer(t, SSHDialerOptions{ConnectTimeout: 10 * time.Second})
	if err != nil {
		e.t.Fatalf("NewSSHDialer: %v", err)
	}
	return d
}

// pod creates a pod directory and its container directory "app".
func (e *env) pod(ns, name string) string {
	uid := strings.ToLower(hex.EncodeToString([]byte(name + "0123456789abcdef"))[:32])
	dir := ns + "_" + name + "_" + uid
	if err := os.MkdirAll(filepath.Join(e.root, dir, "app"), 0o755); err != nil {
		e.t.Fatal(err)
	}
	return dir
}

// testConfig is quick: short quiet period and backoff.
func (e *env) config() Config {
	return Config{NodeName: "node-a", Target: e.target(), QuietPeriod: 300 * time.Millisecond, PollInterval: 100 * time.Millisecond,
		RescanInterval: 2 * time.Second, MinBackoff: 200 * time.Millisecond, MaxBackoff: 2 * time.Second}
}

// fakeRecorder keeps events.
type fakeRecorder struct {
	mu     sync.Mutex
	events []string
}

func (r *fakeRecorder) PodEvent(pod PodRef, typ, reason, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, typ+" "+reason+" "+pod.Namespace+"/"+pod.Name+": "+msg)
}

func (r *fakeRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

func (r *fakeRecorder) count(reason string) int {
	n := 0
	for _, ev := range r.all() {
		if strings.Contains(ev, " "+reason+" ") {
			n++
		}
	}
	return n
}

// testLogger logs the archiver to the test: every line with KEEPLOG_TEST_LOG set, else the last 300 lines when the
// test fails (so that a failure in CI says what the archiver was doing).
func testLogger(t testing.TB) logr.Logger {
	var (
		mu    sync.Mutex
		lines []string
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if t.Failed() {
			t.Logf("the archiver's last %d log lines:\n%s", len(lines), strings.Join(lines, "\n"))
		}
	})
	return funcr.New(func(prefix, args string) {
		if os.Getenv("KEEPLOG_TEST_LOG") != "" {
			t.Log(prefix, args)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, time.Now().Format("15:04:05.000")+" "+prefix+" "+args)
		if len(lines) > 300 {
			lines = lines[len(lines)-300:]
		}
	}, funcr.Options{Verbosity: 2})
}

type running struct {
	t      testing.TB
	a      *Archiver
	rec    *fakeRecorder
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// start runs an archiver until the test ends (or stop is called).
func (e *env) start(cfg Config, deps Deps) *running {
	e.t.Helper()
	return e.startAfter(cfg, deps, nil)
}

// startAfter is start, calling before (when not nil) between New and Run: what the driver tells at its start.
func (e *env) startAfter(cfg Config, deps Deps, before func(*Archiver)) *running {
	e.t.Helper()
	r := &running{rec: &fakeRecorder{}, reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	deps.Root, deps.StateDir = e.root, e.state
	if deps.Dialer == nil {
		deps.Dialer = e.dialer(cfg.Target)
	}
	if deps.Recorder == nil {
		deps.Recorder = r.rec
	}
	deps.Registerer = r.reg
	deps.Log = testLogger(e.t)
	a, err := New(cfg, deps)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	r.a = a
	if before != nil {
		before(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.t = e.t
	go func() { r.done <- a.Run(ctx) }()
	e.t.Cleanup(r.stop)
	return r
}

// stop ends Run and waits for it, at most a minute: an archiver that does not stop is wedged, and says so instead
// of hanging the test binary until its timeout.
func (r *running) stop() {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(time.Minute):
		r.t.Errorf("the archiver did not stop within a minute of its context's end: a loop is wedged")
		return
	}
	r.done <- nil // let a second stop return
}

// writeRandom writes size pseudo-random bytes and returns their sha256.
func writeRandom(t testing.TB, p string, size int64, seed uint64) string {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	src := rand.NewChaCha8(s)
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := int64(len(buf))
		if left < n {
			n = left
		}
		_, _ = src.Read(buf[:n])
		h.Write(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		left -= n
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// writeRandomThen writes size pseudo-random bytes, each 64 KiB block passed through edit first.
func writeRandomThen(p string, size int64, seed uint64, edit func([]byte)) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	src := rand.NewChaCha8(s)
	buf := make([]byte, 64<<10)
	for left := size; left > 0; {
		n := min(int64(len(buf)), left)
		_, _ = src.Read(buf[:n])
		edit(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
		left -= n
	}
	return f.Close()
}

func fileSHA(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// serverPath maps a remote path to the server's directory on this machine.
func (e *env) serverPath(remote string) string {
	return filepath.Join(e.srv.DataDir, strings.TrimPrefix(remote, e.srv.RemoteDir))
}

// archived is the server path where a pod's file lands (first generation).
func (e *env) archived(pod, rel string) string {
	ref, err := store.ParsePodDirName(pod)
	if err != nil {
		e.t.Fatal(err)
	}
	rp, err := RemotePath(e.target().BaseDir, ref, rel)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.serverPath(rp)
}

// serverFiles lists every file on the server (relative paths).
func (e *env) serverFiles() []string {
	var out []string
	_ = filepath.WalkDir(e.srv.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(e.srv.DataDir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// waitFor polls cond until it holds; the timeout only stops a hung test.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func readManifest(t testing.TB, p string) Manifest {
	t.Helper()
	b, err := os.ReadFile(p + manifestSuffix)
	if err != nil {
		t.Fatalf("manifest of %s: %v", p, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("manifest of %s: %v", p, err)
	}
	return m
}

func readStatus(t testing.TB, root, pod string) PodStatus {
	t.Helper()
	var ps PodStatus
	b, err := os.ReadFile(filepath.Join(root, pod, api.ArchiveStatusPath))
	if err != nil {
		return ps
	}
	if err := json.Unmarshal(b, &ps); err != nil {
		t.Fatalf("status file of %s: %v", pod, err)
	}
	return ps
}

func statusOf(ps PodStatus, rel string) []FileStatus {
	var out []FileStatus
	for _, f := range ps.Files {
		if f.Path == rel {
			out = append(out, f)
		}
	}
	return out
}

// metricValue reads a counter or gauge.
func metricValue(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	t.Fatalf("not a counter or gauge: %v", m.Desc())
	return 0
}

// seriesCount counts the series of the named families in a registry.
func seriesCount(g prometheus.Gatherer, names ...string) (int, error) {
	fams, err := g.Gather()
	if err != nil {
		return 0, err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	n := 0
	for _, f := range fams {
		if want[f.GetName()] {
			n += len(f.GetMetric())
		}
	}
	return n, nil
}
