package podinfo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	clocktesting "k8s.io/utils/clock/testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keeplog/keeplog/pkg/api"
)

// mapLookup answers owner references from a map keyed by Kind/Name.
func mapLookup(m map[string][]metav1.OwnerReference, fail map[string]error) OwnerLookup {
	return OwnerLookupFunc(func(_ context.Context, ns string, ref metav1.OwnerReference) ([]metav1.OwnerReference, error) {
		key := ref.Kind + "/" + ref.Name
		if err := fail[key]; err != nil {
			return nil, err
		}
		return m[key], nil
	})
}

func ctrl(kind, name string) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: name, UID: types.UID("uid-" + name), Controller: ptr(true)}
}

func TestOwnerChain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lookup OwnerLookup
		owners []metav1.OwnerReference
		want   string
	}{
		{"deployment", mapLookup(map[string][]metav1.OwnerReference{"ReplicaSet/web-7d9f8": {ctrl("Deployment", "web")}}, nil),
			[]metav1.OwnerReference{ctrl("ReplicaSet", "web-7d9f8")}, "ReplicaSet/web-7d9f8 -> Deployment/web"},
		{"no lookup: direct owner only", nil, []metav1.OwnerReference{ctrl("ReplicaSet", "web-7d9f8")}, "ReplicaSet/web-7d9f8"},
		{"no owner", mapLookup(nil, nil), nil, ""},
		{"controller preferred over first", mapLookup(nil, nil),
			[]metav1.OwnerReference{{Kind: "ConfigMap", Name: "cm"}, ctrl("StatefulSet", "db")}, "StatefulSet/db"},
		{"lookup fails: chain stops with the error", mapLookup(nil, map[string]error{"ReplicaSet/web-7d9f8": errors.New("forbidden")}),
			[]metav1.OwnerReference{ctrl("ReplicaSet", "web-7d9f8")}, "ReplicaSet/web-7d9f8 (its owners unknown: forbidden)"},
		{"cycle stops", mapLookup(map[string][]metav1.OwnerReference{"A/a": {ctrl("B", "b")}, "B/b": {ctrl("A", "a")}}, nil),
			[]metav1.OwnerReference{ctrl("A", "a")}, "A/a -> B/b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod()
			pod.OwnerReferences = tc.owners
			var parts []string
			for _, o := range OwnerChain(context.Background(), tc.lookup, pod) {
				parts = append(parts, o.String())
			}
			if got := strings.Join(parts, " -> "); got != tc.want {
				t.Errorf("chain = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAPIOwnerLookupWithFakeClient(t *testing.T) {
	client := fake.NewClientset(
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-7d9f8", UID: "uid-web-7d9f8",
			OwnerReferences: []metav1.OwnerReference{ctrl("Deployment", "web")}}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "uid-web"}},
	)
	pod := testPod()
	pod.OwnerReferences = []metav1.OwnerReference{ctrl("ReplicaSet", "web-7d9f8")}
	chain := OwnerChain(context.Background(), APIOwnerLookup(fakeAPI{client}), pod)
	if got := fmt.Sprint(chain); got != "[ReplicaSet/web-7d9f8 Deployment/web]" {
		t.Errorf("chain = %s", got)
	}
	// A ReplicaSet recreated under the same name is not the owner any more.
	pod.OwnerReferences[0].UID = "another-uid"
	chain = OwnerChain(context.Background(), APIOwnerLookup(fakeAPI{client}), pod)
	if len(chain) != 1 || !strings.Contains(chain[0].Err, "recreated") {
		t.Errorf("chain with a stale uid = %+v", chain)
	}
	// A missing object ends the chain with an error naming it.
	pod.OwnerReferences = []metav1.OwnerReference{ctrl("DaemonSet", "gone")}
	chain = OwnerChain(context.Background(), APIOwnerLookup(fakeAPI{client}), pod)
	if len(chain) != 1 || !strings.Contains(chain[0].Err, "DaemonSet shop/gone") {
		t.Errorf("chain with a missing owner = %+v", chain)
	}
}

func TestQOSClass(t *testing.T) {
	c := func(req, lim corev1.ResourceList) corev1.Container {
		return corev1.Container{Name: "c", Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}
	}
	for _, tc := range []struct {
		name       string
		status     corev1.PodQOSClass
		containers []corev1.Container
		want       corev1.PodQOSClass
	}{
		{"status wins", corev1.PodQOSGuaranteed, []corev1.Container{c(nil, nil)}, corev1.PodQOSGuaranteed},
		{"nothing set", "", []corev1.Container{c(nil, nil)}, corev1.PodQOSBestEffort},
		{"limits only equal requests", "", []corev1.Container{c(nil, quantities("cpu", "1", "memory", "1Gi"))}, corev1.PodQOSGuaranteed},
		{"requests equal limits", "", []corev1.Container{c(quantities("cpu", "1", "memory", "1Gi"), quantities("cpu", "1000m", "memory", "1Gi"))}, corev1.PodQOSGuaranteed},
		{"requests below limits", "", []corev1.Container{c(quantities("cpu", "500m"), quantities("cpu", "1", "memory", "1Gi"))}, corev1.PodQOSBurstable},
		{"one container without", "", []corev1.Container{c(nil, quantities("cpu", "1", "memory", "1Gi")), c(nil, nil)}, corev1.PodQOSBurstable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: tc.containers}, Status: corev1.PodStatus{QOSClass: tc.status}}
			if got := QOSClass(pod); got != tc.want {
				t.Errorf("QOSClass = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestSummary(t *testing.T) {
	pod := testPod()
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), FSGroup: ptr(int64(2000))}
	owners := []Owner{{Kind: "ReplicaSet", Name: "web-7d9f8"}, {Kind: "Deployment", Name: "web"}}
	got := Summary(pod, owners, fixedNow)
	for _, want := range []string{
		"Namespace:        shop\n",
		"Name:             web-7d9f8-abcde\n",
		"UID:              " + testRef.UID + "\n",
		"Node:             node-1\n",
		"Owners:           ReplicaSet/web-7d9f8 -> Deployment/web\n",
		"Labels:           app=web\n                  pod-template-hash=7d9f8\n",
		"Service account:  web-sa\n",
		"Start time:       2030-01-02T03:00:00Z\n",
		"QoS class:        Burstable\n",
		"Security:         runAsUser=1000 fsGroup=2000\n",
		"Init containers:\n  migrate (image registry.example/migrate:1.2)\n    requests: <none>\n",
		"  app (image registry.example/web:3.4)\n    requests: cpu=250m memory=64Mi\n    limits:   memory=128Mi\n",
		"  sidecar (image registry.example/proxy:1.0)\n",
		"Ephemeral containers:\n  debugger (image busybox)\n",
		"Written:          2030-01-02T03:04:05Z by keeplog from the Kubernetes API\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "hunter2") {
		t.Error("summary shows an env value")
	}
}

func TestMinimalThenComplete(t *testing.T) {
	requireRoot(t)
	dir := newPodDir(t, testRef)
	w := NewWriter(Options{Clock: clocktesting.NewFakePassiveClock(fixedNow)})
	pc, ok, err := PodContextFromVolumeContext(map[string]string{
		api.VolumeContextPodNamespace: testRef.Namespace, api.VolumeContextPodName: testRef.Name, api.VolumeContextPodUID: testRef.UID,
		api.VolumeContextServiceAccount: "web-sa"})
	if err != nil || !ok {
		t.Fatalf("PodContextFromVolumeContext = %v, %v", ok, err)
	}
	if err := w.WriteMinimal(dir, pc); err != nil {
		t.Fatal(err)
	}
	txt := filepath.Join(dir, api.KeeplogDir, api.PodTextFile)
	if got := readFile(t, txt); !strings.Contains(got, "Service account:  web-sa") || !strings.Contains(got, "Incomplete") {
		t.Errorf("minimal pod.txt:\n%s", got)
	}
	if HasPodMetadata(dir) {
		t.Error("HasPodMetadata after the minimal variant")
	}
	if err := w.WritePodMetadata(context.Background(), dir, testPod()); err != nil {
		t.Fatal(err)
	}
	if !HasPodMetadata(dir) {
		t.Error("no HasPodMetadata after WritePodMetadata")
	}
	// A later minimal write (plugin restarted, API down) never replaces the complete description.
	if err := w.WriteMinimal(dir, pc); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, txt); strings.Contains(got, "Incomplete") || !strings.Contains(got, "Containers:") {
		t.Errorf("pod.txt after a late minimal write:\n%s", got)
	}
}

func TestPodContextFromVolumeContext(t *testing.T) {
	if _, ok, err := PodContextFromVolumeContext(map[string]string{}); ok || err != nil {
		t.Errorf("empty context: ok %v err %v", ok, err)
	}
	_, ok, err := PodContextFromVolumeContext(map[string]string{api.VolumeContextPodNamespace: "ns", api.VolumeContextPodName: "../x", api.VolumeContextPodUID: testRef.UID})
	if ok || err == nil || !strings.Contains(err.Error(), `"../x"`) {
		t.Errorf("bad name: ok %v err %v", ok, err)
	}
}
