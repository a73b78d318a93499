package kube

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/go-logr/logr"

	"github.com/keeplog/keeplog/pkg/store"
)

func pod(name, uid string, ann map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(uid), Annotations: ann},
		Spec: corev1.PodSpec{NodeName: "node-a"}}
}

func TestNodePodsGetChecksUIDAndReportsChanges(t *testing.T) {
	client := fake.NewClientset(pod("app", "uid-1", map[string]string{"keeplog.csi.io/first-only": "true"}))
	n := NewNodePods(client.CoreV1().Pods(""), "node-a", 0)
	var mu sync.Mutex
	changes := map[string]int{}
	if err := n.OnChange(func(p *corev1.Pod) { mu.Lock(); changes[p.Name]++; mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if !n.WaitSynced(ctx) {
		t.Fatal("cache never synced")
	}
	if a, ok := n.Annotations(store.PodRef{Namespace: "ns", Name: "app", UID: "uid-1"}); !ok || a["keeplog.csi.io/first-only"] != "true" {
		t.Fatalf("annotations %v %v", a, ok)
	}
	// Same name, another UID: a recreated pod is not the one the directory belongs to.
	if _, ok := n.Get(store.PodRef{Namespace: "ns", Name: "app", UID: "uid-0"}); ok {
		t.Fatal("Get matched a pod of another UID")
	}
	if _, ok := n.Get(store.PodRef{Namespace: "ns", Name: "gone", UID: "uid-9"}); ok {
		t.Fatal("Get found a pod that does not exist")
	}
	updated := pod("app", "uid-1", map[string]string{"keeplog.csi.io/first-only-reset": "1"})
	if _, err := client.CoreV1().Pods("ns").Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		a, _ := n.Annotations(store.PodRef{Namespace: "ns", Name: "app", UID: "uid-1"})
		return changes["app"] >= 2 && a["keeplog.csi.io/first-only-reset"] == "1", nil
	})
	if err != nil {
		t.Fatalf("update not seen: changes %v", changes)
	}
}

func TestEventsOnPods(t *testing.T) {
	var nilEvents *Events
	nilEvents.PodEvent(store.PodRef{Namespace: "ns", Name: "x", UID: "u"}, "Normal", "R", "m") // no API: no panic
	nilEvents.Shutdown()

	api := newAPI(t)
	e := NewEvents(api.clients(t), "keeplog", "node-a", logr.Discard())
	defer e.Shutdown()
	ref := store.PodRef{Namespace: "ns", Name: "deleted-already", UID: "uid-7"}
	e.PodEvent(ref, corev1.EventTypeWarning, "ArchiveFailed", "cannot read x.hprof")
	req := api.wait(t, "POST /api/v1/namespaces/ns/events")
	ev := &corev1.Event{}
	if err := json.Unmarshal(req.body, ev); err != nil {
		t.Fatalf("event body %q: %v", req.body, err)
	}
	if ev.InvolvedObject.UID != "uid-7" || ev.InvolvedObject.Kind != "Pod" || ev.Reason != "ArchiveFailed" ||
		ev.Type != corev1.EventTypeWarning || ev.Source.Component != "keeplog" || ev.Source.Host != "node-a" ||
		ev.Namespace != "ns" || ev.APIVersion != "v1" || ev.Kind != "Event" {
		t.Fatalf("event %+v", ev)
	}
}
