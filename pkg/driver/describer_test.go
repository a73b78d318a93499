package driver

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"k8s.io/mount-utils"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/podinfo"
)

// recorder is a Describer that records its calls and how many mounts existed at each.
type recorder struct {
	mu      sync.Mutex
	m       *mount.FakeMounter
	calls   []string
	uses    []podinfo.Use
	mounted []int
}

func (r *recorder) add(kind string, u podinfo.Use) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, kind)
	r.uses = append(r.uses, u)
	n := 0
	if r.m != nil {
		n = len(r.m.MountPoints)
	}
	r.mounted = append(r.mounted, n)
}
func (r *recorder) Published(_ context.Context, u podinfo.Use)   { r.add("published", u) }
func (r *recorder) Unpublished(_ context.Context, u podinfo.Use) { r.add("unpublished", u) }
func (r *recorder) Resume(u podinfo.Use)                         { r.add("resume", u) }

func TestDescriberIsToldAboutEachPodsUse(t *testing.T) {
	f := newFixture(t)
	rec := &recorder{m: f.m}
	f.d.describer = rec
	id := f.create(t, "pvc-d")
	target := filepath.Join(f.target, "d", "mount")
	vc := podCtx("ns", "web", "11111111-2222-3333-4444-555555555555")
	vc[api.VolumeContextServiceAccount] = "builder"
	if err := f.publish(id, target, vc); err != nil {
		t.Fatal(err)
	}
	if err := f.publish(id, target, vc); err != nil { // an idempotent retry describes nothing again
		t.Fatal(err)
	}
	if err := f.unpublish(id, target); err != nil {
		t.Fatal(err)
	}
	if err := f.unpublish(id, target); err != nil {
		t.Fatal(err)
	}
	if got := rec.calls; len(got) != 2 || got[0] != "published" || got[1] != "unpublished" {
		t.Fatalf("calls %v, want one published and one unpublished", got)
	}
	if rec.mounted[0] != 0 || rec.mounted[1] != 0 {
		t.Errorf("mounts at the calls %v: published must run before the mount, unpublished after the unmount", rec.mounted)
	}
	u := rec.uses[0]
	want := filepath.Join(f.root, "ns_web_11111111-2222-3333-4444-555555555555")
	if u.PodDir != want || u.PVName != "pvc-d" || u.Pod.ServiceAccount != "builder" || u.Pod.Pod.Name != "web" {
		t.Errorf("published %+v, want dir %s, PV pvc-d, service account builder", u, want)
	}

	// No pod information: nothing to describe. An ephemeral volume has no PV.
	if err := f.publish(id, filepath.Join(f.target, "x", "mount"), nil); err != nil {
		t.Fatal(err)
	}
	eph := podCtx("ns", "batch", "21111111-2222-3333-4444-555555555555")
	eph[api.VolumeContextEphemeral] = "true"
	if err := f.publish("csi-eph1", filepath.Join(f.target, "e", "mount"), eph); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.calls); n != 3 || rec.uses[2].PVName != "" {
		t.Fatalf("calls %v uses %+v: want one more publish, for the ephemeral volume, without a PV name", rec.calls, rec.uses)
	}

	// After a restart, the still-published pod directory is resumed.
	rec2 := &recorder{}
	d2, err := New(Config{NodeID: testNode}, Deps{Store: f.st, Mounter: f.m, Statfs: f.d.statfs, Describer: rec2})
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if len(rec2.calls) != 1 || rec2.calls[0] != "resume" || rec2.uses[0].Pod.Pod.Name != "batch" {
		t.Fatalf("resumed %v %+v, want the ephemeral pod only", rec2.calls, rec2.uses)
	}
}

// archiverRecorder records which pod directories the archiver is told are unpublished.
type archiverRecorder struct {
	mu        sync.Mutex
	dirs      []string // unpublished
	published []string
}

func (a *archiverRecorder) MarkPublished(dir string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.published = append(a.published, dir)
}

func (a *archiverRecorder) MarkUnpublished(dir string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dirs = append(a.dirs, dir)
}

func TestArchiverIsToldWhenAPodDirectoryIsPublishedAndUnpublished(t *testing.T) {
	f := newFixture(t)
	arc := &archiverRecorder{}
	f.d.archiver = arc
	id := f.create(t, "pvc-a")
	target := filepath.Join(f.target, "a", "mount")
	if err := f.publish(id, target, podCtx("ns", "app", "31111111-2222-3333-4444-555555555555")); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(f.root, "ns_app_31111111-2222-3333-4444-555555555555")
	if len(arc.dirs) != 0 || len(arc.published) != 1 || arc.published[0] != want {
		t.Fatalf("told unpublished %v, published %v at publish, want published [%s] only", arc.dirs, arc.published, want)
	}
	for range 2 { // the retry of an unpublish tells nothing again
		if err := f.unpublish(id, target); err != nil {
			t.Fatal(err)
		}
	}
	if len(arc.dirs) != 1 || arc.dirs[0] != want {
		t.Fatalf("told %v, want exactly [%s]", arc.dirs, want)
	}
}
