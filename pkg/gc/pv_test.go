package gc

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

const topologyKey = "topology.keeplog.csi.io/node"

func pv(name, node string, phase corev1.PersistentVolumePhase, reclaim corev1.PersistentVolumeReclaimPolicy) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name),
			Finalizers: []string{"kubernetes.io/pv-protection", provisionerFinalizer}},
		Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: "keeplog.csi.io", VolumeHandle: "v1:" + node + ":" + name}},
			ClaimRef: &corev1.ObjectReference{Namespace: "ns", Name: "claim-" + name},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: topologyKey, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}}}}}},
		},
		Status: corev1.PersistentVolumeStatus{Phase: phase},
	}
}

func getPV(t *testing.T, f *fixture, name string) *corev1.PersistentVolume {
	t.Helper()
	p, err := f.kube.CoreV1().PersistentVolumes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReleasedPVReclaimedWhenItsDirectoriesAreGone(t *testing.T) {
	f := newFixture(t)
	f.kube = fake.NewClientset(
		pv("pvc-released", "node-a", corev1.VolumeReleased, corev1.PersistentVolumeReclaimRetain),
		pv("pvc-bound", "node-a", corev1.VolumeBound, corev1.PersistentVolumeReclaimRetain),
		pv("pvc-kept", "node-a", corev1.VolumeReleased, corev1.PersistentVolumeReclaimRetain),
	)
	params := map[string]string{api.ParamRetainFor: "1h"}
	f.volume("v1:node-a:pvc-released", store.Persistent, "pvc-released", params)
	f.volume("v1:node-a:pvc-bound", store.Persistent, "pvc-bound", params)
	f.volume("v1:node-a:pvc-kept", store.Persistent, "pvc-kept", map[string]string{api.ParamRetainFor: "10h"})
	f.volume("v1:node-a:pvc-gone", store.Persistent, "pvc-gone", params) // its PV was deleted by hand
	// A Released PV of a volume made a minute ago that never got a directory (its claim went before its pod ran).
	if _, err := f.kube.CoreV1().PersistentVolumes().Create(context.Background(),
		pv("pvc-early", "node-a", corev1.VolumeReleased, corev1.PersistentVolumeReclaimRetain), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, v := range []string{"pvc-released", "pvc-bound", "pvc-kept", "pvc-gone"} {
		d, target := f.podDir("v1:node-a:"+v, 10)
		f.unpublish("v1:node-a:"+v, target)
		dirs = append(dirs, d)
	}
	g := f.gc()
	f.clk.Step(time.Hour)
	f.volume("v1:node-a:pvc-early", store.Persistent, "pvc-early", params)
	f.clk.Step(time.Minute)
	res := f.pass(g)
	if got, want := slices.Sorted(slices.Values(deletedDirs(res))), []string{dirs[0], dirs[1], dirs[3]}; !slices.Equal(got, want) {
		t.Fatalf("deleted %v, want %v", deletedDirs(res), want)
	}
	if !slices.Equal(res.ReclaimedPVs, []string{"pvc-early", "pvc-released"}) {
		t.Fatalf("reclaimed %v, want only the Released PV without directories", res.ReclaimedPVs)
	}
	if got := getPV(t, f, "pvc-released").Spec.PersistentVolumeReclaimPolicy; got != corev1.PersistentVolumeReclaimDelete {
		t.Fatalf("Released PV reclaim policy %s", got)
	}
	for _, name := range []string{"pvc-bound", "pvc-kept"} {
		if got := getPV(t, f, name).Spec.PersistentVolumeReclaimPolicy; got != corev1.PersistentVolumeReclaimRetain {
			t.Fatalf("PV %s: reclaim policy %s, want Retain (bound, or a directory still retained)", name, got)
		}
	}
	// The record of the volume whose PV is gone stays until the volume is as old as the orphan grace (24h).
	if _, err := f.st.GetVolume("v1:node-a:pvc-gone"); err != nil {
		t.Fatal(err)
	}
	f.clk.Step(22 * time.Hour)
	f.pass(g)
	if _, err := f.st.GetVolume("v1:node-a:pvc-gone"); err != nil {
		t.Fatalf("record gone before the grace: %v", err)
	}
	f.clk.Step(time.Hour)
	res = f.pass(g)
	if !slices.Equal(res.Volumes, []string{"v1:node-a:pvc-gone"}) {
		t.Fatalf("volumes deleted %v, want the one without PV after 24h", res.Volumes)
	}
	// The Released PV's volume is deleted through CSI DeleteVolume by csi-provisioner, not here.
	if _, err := f.st.GetVolume("v1:node-a:pvc-released"); err != nil {
		t.Fatal(err)
	}
}

func TestOrphanPVsOfVanishedNodes(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}
	kube := fake.NewClientset(node,
		pv("pvc-a", "node-a", corev1.VolumeReleased, corev1.PersistentVolumeReclaimRetain),
		pv("pvc-b", "node-b", corev1.VolumeReleased, corev1.PersistentVolumeReclaimRetain),
		pv("pvc-c", "node-b", corev1.VolumeBound, corev1.PersistentVolumeReclaimRetain),
		pv("pvc-d", "node-c", corev1.VolumeReleased, corev1.PersistentVolumeReclaimRetain),
	)
	other := pv("other", "node-b", corev1.VolumeReleased, corev1.PersistentVolumeReclaimRetain)
	other.Spec.CSI.Driver = "other.csi.io"
	if _, err := kube.CoreV1().PersistentVolumes().Create(context.Background(), other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	o, err := NewOrphanPVs(OrphanConfig{DriverName: "keeplog.csi.io", TopologyKey: topologyKey, Grace: 24 * time.Hour}, fakeAPI(kube), clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pass := func() []string {
		t.Helper()
		d, err := o.Pass(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := pass(); len(d) != 0 {
		t.Fatalf("first sight of a missing node deleted %v", d)
	}
	get := func(name string) (*corev1.PersistentVolume, error) {
		return kube.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
	}
	for name, marked := range map[string]bool{"pvc-a": false, "pvc-b": true, "pvc-c": true, "pvc-d": true, "other": false} {
		p, err := get(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p.Annotations[api.AnnotationPVNodeMissingSince]; ok != marked {
			t.Fatalf("PV %s marked=%v, want %v", name, ok, marked)
		}
	}
	// node-c comes back before the grace ends: unmarked, kept.
	if _, err := kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-c"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	clk.Step(24*time.Hour - time.Second)
	if d := pass(); len(d) != 0 {
		t.Fatalf("deleted %v before the grace", d)
	}
	if p, _ := get("pvc-d"); p.Annotations[api.AnnotationPVNodeMissingSince] != "" {
		t.Fatal("PV of a node that came back is still marked")
	}
	clk.Step(time.Second)
	if d := pass(); !slices.Equal(d, []string{"pvc-b"}) {
		t.Fatalf("after the grace deleted %v, want pvc-b (pvc-c is still bound)", d)
	}
	if _, err := get("pvc-b"); !apierrors.IsNotFound(err) {
		t.Fatalf("pvc-b: %v", err)
	}
	for _, name := range []string{"pvc-a", "pvc-c", "pvc-d", "other"} {
		if _, err := get(name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func TestOrphanPVsDryRun(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	p := pv("pvc-b", "node-b", corev1.VolumeReleased, corev1.PersistentVolumeReclaimRetain)
	p.Annotations = map[string]string{api.AnnotationPVNodeMissingSince: t0.Add(-48 * time.Hour).Format(time.RFC3339)}
	kube := fake.NewClientset(p)
	o, err := NewOrphanPVs(OrphanConfig{DriverName: "keeplog.csi.io", TopologyKey: topologyKey, Grace: time.Hour, DryRun: true}, fakeAPI(kube), clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := o.Pass(context.Background()); err != nil || len(d) != 0 {
		t.Fatalf("dry run: deleted %v, %v", d, err)
	}
	if _, err := kube.CoreV1().PersistentVolumes().Get(context.Background(), "pvc-b", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestRunElectedOneLeaderAtATime(t *testing.T) {
	kube := fake.NewClientset()
	var leading, maxLeading atomic.Int32
	run := func(ctx context.Context, id string, led chan<- string) {
		_ = RunElected(ctx, kube.CoordinationV1().Leases("kube-system"), LeaderConfig{Namespace: "kube-system", Name: "keeplog-gc-leader", Identity: id,
			// client-go compares Lease records whose renew time has whole-second
			// precision, so a contender sees the holder's renewals at most once a
			// second: a Lease shorter than a few seconds can expire in its eyes
			// while the holder renews on time (this test failed in CI with 1 s).
			LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 200 * time.Millisecond},
			func(ctx context.Context) {
				n := leading.Add(1)
				for m := maxLeading.Load(); n > m && !maxLeading.CompareAndSwap(m, n); m = maxLeading.Load() {
				}
				led <- id
				<-ctx.Done()
				leading.Add(-1)
			})
	}
	led := make(chan string, 4)
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	doneA := make(chan struct{})
	go func() { run(ctxA, "node-a", led); close(doneA) }()
	if id := waitLeader(t, led); id != "node-a" {
		t.Fatalf("leader %s", id)
	}
	// The record is leaderelection's, in the Lease of that name (not a semaphore slot "<name>-0").
	l, err := kube.CoordinationV1().Leases("kube-system").Get(context.Background(), "keeplog-gc-leader", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != "node-a" || l.Spec.RenewTime == nil ||
		l.Spec.LeaseDurationSeconds == nil || *l.Spec.LeaseDurationSeconds != 4 {
		t.Fatalf("Lease %+v, %v: want held by node-a for 4 s", l, err)
	}
	go run(ctxB, "node-b", led)
	select {
	case id := <-led:
		t.Fatalf("%s leads while node-a holds the Lease", id)
	case <-time.After(6 * time.Second):
	}
	stopA()
	<-doneA
	if id := waitLeader(t, led); id != "node-b" {
		t.Fatalf("after node-a stopped, leader %s", id)
	}
	if maxLeading.Load() != 1 {
		t.Fatalf("%d leaders at once", maxLeading.Load())
	}
}

func waitLeader(t *testing.T, led <-chan string) string {
	t.Helper()
	select {
	case id := <-led:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("nobody leads")
		return ""
	}
}

// TestOrphanPVDeletedMeanwhileIsNotCounted: a PV of a vanished node that someone else deleted between the list and
// this collector's delete (an admin, a previous leader) is neither reported as deleted nor counted in
// keeplog_gc_pv_cleanups_total{reason="node_gone"}.
func TestOrphanPVDeletedMeanwhileIsNotCounted(t *testing.T) {
	for _, verb := range []string{"update", "delete"} { // gone before the finalizer's removal, or before the delete
		t.Run(verb, func(t *testing.T) {
			f := newFixture(t)
			g := f.gc()
			p := pv("pvc-b", "node-b", corev1.VolumeReleased, corev1.PersistentVolumeReclaimRetain)
			p.Annotations = map[string]string{api.AnnotationPVNodeMissingSince: f.clk.Now().Add(-48 * time.Hour).Format(time.RFC3339)}
			kube := fake.NewClientset(p)
			kube.PrependReactor(verb, "persistentvolumes", func(action k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewNotFound(corev1.Resource("persistentvolumes"), "pvc-b")
			})
			o, err := NewOrphanPVs(OrphanConfig{DriverName: "keeplog.csi.io", TopologyKey: topologyKey, Grace: time.Hour}, fakeAPI(kube), f.clk, g)
			if err != nil {
				t.Fatal(err)
			}
			d, err := o.Pass(context.Background())
			if err != nil || len(d) != 0 {
				t.Fatalf("a PV deleted meanwhile: reported deleted %v, %v; want none, no error", d, err)
			}
			if n := counter(g.metrics.pvs.WithLabelValues("node_gone")); n != 0 {
				t.Fatalf("keeplog_gc_pv_cleanups_total{reason=node_gone} = %v, want 0", n)
			}
		})
	}
}
