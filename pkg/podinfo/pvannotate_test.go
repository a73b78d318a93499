package podinfo

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

func podN(i int) store.PodRef {
	return store.PodRef{Namespace: "shop", Name: fmt.Sprintf("web-%d", i), UID: fmt.Sprintf("00000000-0000-0000-0000-%012d", i)}
}

func podList(t *testing.T, ann map[string]string) []store.PodRef {
	t.Helper()
	var pods []store.PodRef
	if err := json.Unmarshal([]byte(ann[api.AnnotationPVPods]), &pods); err != nil {
		t.Fatalf("%s = %q: %v", api.AnnotationPVPods, ann[api.AnnotationPVPods], err)
	}
	return pods
}

func names(pods []store.PodRef) string {
	var n []string
	for _, p := range pods {
		n = append(n, p.Name)
	}
	return strings.Join(n, ",")
}

func TestPVAnnotations(t *testing.T) {
	list := func(idx ...int) string {
		var pods []store.PodRef
		for _, i := range idx {
			pods = append(pods, podN(i))
		}
		b, _ := json.Marshal(pods)
		return string(b)
	}
	full := func(pods string, path string) map[string]string {
		return map[string]string{api.AnnotationPVPods: pods, api.AnnotationPVNode: "node-1", api.AnnotationPVHostPath: path}
	}
	for _, tc := range []struct {
		name        string
		existing    map[string]string
		pod         int
		maxPods     int
		wantPods    string
		wantChanged bool
	}{
		{"first pod", nil, 1, 0, "web-1", true},
		{"same pod again: nothing to change", full(list(1), "/var/log/keeplog/shop_web-1_"+podN(1).UID), 1, 0, "web-1", false},
		{"second pod appended", full(list(1), "/x"), 2, 0, "web-1,web-2", true},
		{"an earlier pod published again moves last", full(list(1, 2, 3), "/x"), 1, 0, "web-2,web-3,web-1", true},
		{"bounded: the oldest dropped", full(list(1, 2, 3), "/x"), 4, 3, "web-2,web-3,web-4", true},
		{"malformed list started again", full("not json", "/x"), 5, 0, "web-5", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := podN(tc.pod)
			hostPath := "/var/log/keeplog/" + ref.DirName()
			got, changed, err := PVAnnotations(tc.existing, ref, "node-1", hostPath, tc.maxPods)
			if err != nil {
				t.Fatal(err)
			}
			if changed != tc.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tc.wantChanged)
			}
			if n := names(podList(t, got)); n != tc.wantPods {
				t.Errorf("pods = %s, want %s", n, tc.wantPods)
			}
			if got[api.AnnotationPVNode] != "node-1" || got[api.AnnotationPVHostPath] != hostPath {
				t.Errorf("annotations = %v", got)
			}
			if p := podList(t, got); p[len(p)-1] != ref {
				t.Errorf("last pod = %+v, want %+v", p[len(p)-1], ref)
			}
		})
	}
	t.Run("byte bound", func(t *testing.T) {
		var existing map[string]string
		for i := 0; i < 150; i++ {
			ref := store.PodRef{Namespace: "shop", Name: strings.Repeat("n", 200) + fmt.Sprint(i), UID: podN(i).UID}
			ann, _, err := PVAnnotations(existing, ref, "node-1", "/x", 150)
			if err != nil {
				t.Fatal(err)
			}
			existing = ann
		}
		if l := len(existing[api.AnnotationPVPods]); l > maxPodsAnnotationBytes {
			t.Errorf("pods annotation is %d bytes, bound %d", l, maxPodsAnnotationBytes)
		}
		if p := podList(t, existing); !strings.HasSuffix(p[len(p)-1].Name, "149") || len(p) < 10 {
			t.Errorf("kept %d pods, last %s", len(p), p[len(p)-1].Name)
		}
	})
	t.Run("invalid pod", func(t *testing.T) {
		if _, _, err := PVAnnotations(nil, store.PodRef{Namespace: "a", Name: "../b", UID: podN(1).UID}, "n", "/x", 0); err == nil {
			t.Error("invalid pod accepted")
		}
	})
}

func countVerb(client *fake.Clientset, verb string) int {
	n := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == "persistentvolumes" {
			n++
		}
	}
	return n
}

func TestPVAnnotatorWithFakeClient(t *testing.T) {
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-1", ResourceVersion: "7",
		Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": "keeplog.csi.io"}}}
	client := fake.NewClientset(pv)
	a := &PVAnnotator{Client: fakeAPI{client}}
	ctx := context.Background()
	if err := a.Annotate(ctx, "pvc-1", podN(1), "node-1", "/var/log/keeplog/"+podN(1).DirName()); err != nil {
		t.Fatal(err)
	}
	if err := a.Annotate(ctx, "pvc-1", podN(2), "node-1", "/var/log/keeplog/"+podN(2).DirName()); err != nil {
		t.Fatal(err)
	}
	patches := countVerb(client, "patch")
	// Idempotent: the same publish again reads and does not patch.
	if err := a.Annotate(ctx, "pvc-1", podN(2), "node-1", "/var/log/keeplog/"+podN(2).DirName()); err != nil {
		t.Fatal(err)
	}
	if got := countVerb(client, "patch"); got != patches || patches != 2 {
		t.Errorf("patches: %d after two publishes, %d after a repeat", patches, got)
	}
	got, err := client.CoreV1().PersistentVolumes().Get(ctx, "pvc-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := names(podList(t, got.Annotations)); n != "web-1,web-2" {
		t.Errorf("pods = %s", n)
	}
	if got.Annotations[api.AnnotationPVNode] != "node-1" || got.Annotations[api.AnnotationPVHostPath] != "/var/log/keeplog/"+podN(2).DirName() ||
		got.Annotations["pv.kubernetes.io/provisioned-by"] != "keeplog.csi.io" {
		t.Errorf("annotations = %v", got.Annotations)
	}
	// The merge patch carries the resourceVersion read.
	for _, act := range client.Actions() {
		if p, ok := act.(k8stesting.PatchAction); ok {
			if !strings.Contains(string(p.GetPatch()), `"resourceVersion"`) {
				t.Errorf("patch without resourceVersion: %s", p.GetPatch())
			}
		}
	}
}

func TestPVAnnotatorRetriesOnConflict(t *testing.T) {
	client := fake.NewClientset(&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-1"}})
	conflicts := 0
	client.PrependReactor("patch", "persistentvolumes", func(k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts < 2 {
			conflicts++
			// Another publish annotated the PV meanwhile.
			pv, _ := client.Tracker().Get(schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumes"}, "", "pvc-1")
			pv = pv.DeepCopyObject()
			ann, _, _ := PVAnnotations(nil, podN(9), "node-1", "/y", 0)
			pv.(*corev1.PersistentVolume).Annotations = ann
			if err := client.Tracker().Update(schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumes"}, pv, ""); err != nil {
				t.Error(err)
			}
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "persistentvolumes"}, "pvc-1", fmt.Errorf("modified"))
		}
		return false, nil, nil
	})
	if err := (&PVAnnotator{Client: fakeAPI{client}}).Annotate(context.Background(), "pvc-1", podN(1), "node-1", "/x"); err != nil {
		t.Fatal(err)
	}
	got, _ := client.CoreV1().PersistentVolumes().Get(context.Background(), "pvc-1", metav1.GetOptions{})
	if n := names(podList(t, got.Annotations)); n != "web-9,web-1" || conflicts != 2 {
		t.Errorf("pods = %s after %d conflicts: the concurrent pod must be kept", n, conflicts)
	}
	if err := (&PVAnnotator{Client: fakeAPI{client}}).Annotate(context.Background(), "missing", podN(1), "node-1", "/x"); err == nil ||
		!apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "annotate PV missing") {
		t.Errorf("missing PV: %v", err)
	}
}
