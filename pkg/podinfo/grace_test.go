package podinfo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// graceEnv is a fake /var/log/pods, a keeplog root with a real store, a node pod cache and a clock the test moves.
type graceEnv struct {
	t      *testing.T
	source string
	root   string
	pods   map[store.PodRef]*corev1.Pod
	ns     map[string]map[string]string
	now    time.Time
	g      *Grace
}

func newGraceEnv(t *testing.T, sourceBase string) *graceEnv {
	t.Helper()
	requireRoot(t)
	e := &graceEnv{t: t, source: filepath.Join(sourceBase, "pods"), root: filepath.Join(t.TempDir(), "root"),
		pods: map[store.PodRef]*corev1.Pod{}, ns: map[string]map[string]string{}, now: fixedNow}
	st, err := store.Open(e.root, funcClock(func() time.Time { return e.now }))
	if err != nil {
		t.Fatal(err)
	}
	e.g, err = NewGrace(GraceConfig{Root: e.root, SourceRoot: e.source, RetainFor: time.Hour, Clock: funcClock(func() time.Time { return e.now })},
		GraceDeps{Store: st, Pod: func(r store.PodRef) (*corev1.Pod, bool) { p, ok := e.pods[r]; return p, ok },
			NamespaceLabels: func(_ context.Context, n string) (map[string]string, error) { return e.ns[n], nil }})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *graceEnv) pod(name string, ann map[string]string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Annotations: ann,
		UID: types.UID(fmt.Sprintf("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1%02x", len(e.pods)))},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Env: []corev1.EnvVar{{Name: "TOKEN", Value: "s3cret"}}}}}}
	e.pods[refOf(p)] = p
	e.g.PodChanged(p)
	return p
}

func (e *graceEnv) kubeletDir(p *corev1.Pod) string {
	return filepath.Join(e.source, refOf(p).DirName(), "app")
}

func (e *graceEnv) treeDir(p *corev1.Pod) string {
	return filepath.Join(e.root, api.PodLogsDir, refOf(p).DirName(), "app")
}

func (e *graceEnv) write(p *corev1.Pod, name, line string) {
	e.t.Helper()
	if err := os.MkdirAll(e.kubeletDir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(e.kubeletDir(p), name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "2030-01-02T03:04:05.000000001Z stdout F %s\n", line)
}

func nlink(t *testing.T, path string) (uint64, uint64) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Ino, uint64(st.Nlink)
}

func TestGraceLinksKubeletFilesAndKeepsThemPastDeletion(t *testing.T) {
	e := newGraceEnv(t, t.TempDir())
	p := e.pod("web", map[string]string{api.AnnotationStdoutGrace: "true"})
	e.write(p, "0.log", "first")
	e.g.Poll(t.Context())
	ki, kl := nlink(t, filepath.Join(e.kubeletDir(p), "0.log"))
	ti, _ := nlink(t, filepath.Join(e.treeDir(p), "0.log"))
	if ki != ti || kl != 2 {
		t.Fatalf("kubelet's 0.log inode %d (%d links), tree's %d: want one inode, 2 links", ki, kl, ti)
	}
	e.write(p, "0.log", "written after the link") // the same inode: nothing to copy
	// Rotation: kubelet renames 0.log, the runtime reopens a new one.
	rotated := "0.log.20300102-030405"
	if err := os.Rename(filepath.Join(e.kubeletDir(p), "0.log"), filepath.Join(e.kubeletDir(p), rotated)); err != nil {
		t.Fatal(err)
	}
	e.write(p, "0.log", "after rotation")
	e.g.Poll(t.Context())
	if ri, _ := nlink(t, filepath.Join(e.treeDir(p), rotated)); ri != ki {
		t.Errorf("rotated name is inode %d, want the first file's %d", ri, ki)
	}
	// The pod is deleted: kubelet removes its files, then the pod leaves the node's cache.
	if err := os.RemoveAll(filepath.Join(e.source, refOf(p).DirName())); err != nil {
		t.Fatal(err)
	}
	delete(e.pods, refOf(p))
	e.g.Poll(t.Context())
	if got := readFile(t, filepath.Join(e.treeDir(p), rotated)); got != "2030-01-02T03:04:05.000000001Z stdout F first\n2030-01-02T03:04:05.000000001Z stdout F written after the link\n" {
		t.Errorf("kept rotated file: %q", got)
	}
	if got := readFile(t, filepath.Join(e.treeDir(p), "0.log")); got != "2030-01-02T03:04:05.000000001Z stdout F after rotation\n" {
		t.Errorf("kept 0.log: %q", got)
	}
	meta := readFile(t, filepath.Join(filepath.Dir(e.treeDir(p)), api.PodLogsPodFile))
	if !strings.Contains(meta, `"uid":"`+string(p.UID)+`"`) || strings.Contains(meta, "s3cret") {
		t.Errorf("pod.json: %s", meta)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(e.treeDir(p)), api.PodLogsEndedFile)); err != nil {
		t.Errorf("no ended file after the pod left the node: %v", err)
	}
}

func TestGraceSelection(t *testing.T) {
	e := newGraceEnv(t, t.TempDir())
	e.ns["shop"] = map[string]string{api.AnnotationStdoutGrace: "true"}
	byNS := e.pod("by-namespace", nil)
	optOut := e.pod("opted-out", map[string]string{api.AnnotationStdoutGrace: "false"})
	withVolume := e.pod("with-volume", map[string]string{api.AnnotationStdoutGrace: "true"})
	if err := os.MkdirAll(filepath.Join(e.root, refOf(withVolume).DirName()), 0o777); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*corev1.Pod{byNS, optOut, withVolume} {
		e.write(p, "0.log", "line")
	}
	e.g.Poll(t.Context())
	if _, l := nlink(t, filepath.Join(e.kubeletDir(byNS), "0.log")); l != 2 {
		t.Errorf("a pod of a labelled namespace: %d links, want 2", l)
	}
	for _, p := range []*corev1.Pod{optOut, withVolume} {
		if _, l := nlink(t, filepath.Join(e.kubeletDir(p), "0.log")); l != 1 {
			t.Errorf("%s: %d links, want 1 (not selected, or left to the LogCopier)", p.Name, l)
		}
	}
}

func TestGraceNeverLinksASymlinkOrFifo(t *testing.T) {
	e := newGraceEnv(t, t.TempDir())
	p := e.pod("web", map[string]string{api.AnnotationStdoutGrace: "true"})
	e.write(p, "0.log", "line")
	secret := filepath.Join(t.TempDir(), "secret")
	writeFile(t, secret, "x")
	if err := os.Symlink(secret, filepath.Join(e.kubeletDir(p), "1.log")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(e.kubeletDir(p), "2.log"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.g.Poll(t.Context()) // would block forever on opening the FIFO
	if got := dirNames(t, e.treeDir(p)); got != "0.log" {
		t.Errorf("tree has %q, want only the regular 0.log", got)
	}
}

func TestGraceCopiesAcrossFilesystems(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "keeplog-grace-")
	if err != nil {
		t.Skip("no /dev/shm:", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	e := newGraceEnv(t, shm)
	p := e.pod("web", map[string]string{api.AnnotationStdoutGrace: "true"})
	e.write(p, "0.log", "first")
	e.g.Poll(t.Context())
	e.write(p, "0.log", "second")
	e.g.Poll(t.Context())
	var a, b syscall.Stat_t
	_ = syscall.Stat(shm, &a)
	_ = syscall.Stat(e.root, &b)
	if a.Dev == b.Dev {
		t.Skip("/dev/shm is on the root's filesystem here")
	}
	if got, want := readFile(t, filepath.Join(e.treeDir(p), "0.log")), readFile(t, filepath.Join(e.kubeletDir(p), "0.log")); got != want {
		t.Errorf("copy %q, want %q", got, want)
	}
}

func TestGraceSweepDeletesExpiredEntriesOnly(t *testing.T) {
	e := newGraceEnv(t, t.TempDir())
	gone := e.pod("gone", map[string]string{api.AnnotationStdoutGrace: "true"})
	running := e.pod("running", map[string]string{api.AnnotationStdoutGrace: "true"})
	e.write(gone, "0.log", "line")
	e.write(running, "0.log", "line")
	e.g.Poll(t.Context())
	delete(e.pods, refOf(gone))
	e.g.Poll(t.Context()) // gone: ended written now
	// A restarted plugin: an entry of a pod it never saw, with no ended file yet.
	restart := filepath.Join(e.root, api.PodLogsDir, "shop_old_0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1ff", "app")
	if err := os.MkdirAll(restart, 0o755); err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(30 * time.Minute)
	e.g.Sweep(t.Context()) // the restart entry gets its ended file; nothing is old enough
	if got := readFile(t, filepath.Join(filepath.Dir(restart), api.PodLogsEndedFile)); got != e.now.Format(time.RFC3339)+"\n" {
		t.Errorf("ended file of the entry found at a sweep: %q", got)
	}
	for _, d := range []string{refOf(gone).DirName(), refOf(running).DirName(), filepath.Base(filepath.Dir(restart))} {
		if _, err := os.Stat(filepath.Join(e.root, api.PodLogsDir, d)); err != nil {
			t.Fatalf("%s deleted before its retention: %v", d, err)
		}
	}
	e.now = fixedNow.Add(61 * time.Minute)
	e.g.Sweep(t.Context())
	if _, err := os.Stat(filepath.Join(e.root, api.PodLogsDir, refOf(gone).DirName())); !os.IsNotExist(err) {
		t.Errorf("expired entry kept: %v", err)
	}
	for _, d := range []string{refOf(running).DirName(), filepath.Base(filepath.Dir(restart))} {
		if _, err := os.Stat(filepath.Join(e.root, api.PodLogsDir, d)); err != nil {
			t.Errorf("%s deleted: %v", d, err)
		}
	}
}
