package kube

import (
	"context"
	"strings"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Every resource keeplog uses reaches the path the typed clients use, with the content type they prefer, and
// answers decode into keeplog's scheme.
func TestClientsRequests(t *testing.T) {
	a := newAPI(t)
	c := a.clients(t)
	ctx := context.Background()
	a.answer("GET /api/v1/namespaces/shop/pods/web-0", `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-0","namespace":"shop","uid":"u-0"}}`)
	a.answer("GET /api/v1/pods", `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[{"metadata":{"name":"a","namespace":"x"}}]}`)
	a.answer("GET /api/v1/persistentvolumes/pv-1", `{"kind":"PersistentVolume","apiVersion":"v1","metadata":{"name":"pv-1","resourceVersion":"3"}}`)
	a.answer("PATCH /api/v1/persistentvolumes/pv-1", `{"kind":"PersistentVolume","apiVersion":"v1","metadata":{"name":"pv-1"}}`)
	a.answer("PATCH /api/v1/namespaces/shop/pods/web-0", `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-0"}}`)
	a.answer("GET /api/v1/nodes/node-a", `{"kind":"Node","apiVersion":"v1","metadata":{"name":"node-a"}}`)
	a.answer("GET /api/v1/namespaces/shop", `{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"shop","labels":{"team":"a"}}}`)
	a.answer("GET /apis/apps/v1/namespaces/kube-system/daemonsets/keeplog", `{"kind":"DaemonSet","apiVersion":"apps/v1","metadata":{"name":"keeplog"}}`)

	if p, err := c.GetPod(ctx, "shop", "web-0"); err != nil || p.UID != "u-0" {
		t.Fatalf("GetPod = %+v, %v", p, err)
	}
	if l, err := c.Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-a"}); err != nil || len(l.Items) != 1 || l.ResourceVersion != "7" {
		t.Fatalf("List = %+v, %v", l, err)
	}
	if pv, err := c.GetPV(ctx, "pv-1"); err != nil || pv.ResourceVersion != "3" {
		t.Fatalf("GetPV = %+v, %v", pv, err)
	}
	if err := c.PatchPV(ctx, "pv-1", []byte(`{"metadata":{"annotations":{"a":"b"}}}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.PatchPod(ctx, "shop", "web-0", []byte(`{"metadata":{"annotations":{"c":"d"}}}`)); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Nodes().Get(ctx, "node-a", metav1.GetOptions{}); err != nil || n.Name != "node-a" {
		t.Fatalf("node %+v, %v", n, err)
	}
	if ns, err := c.Namespaces().Get(ctx, "shop", metav1.GetOptions{}); err != nil || ns.Labels["team"] != "a" {
		t.Fatalf("namespace %+v, %v", ns, err)
	}
	if ds, err := c.DaemonSets("kube-system").Get(ctx, "keeplog", metav1.GetOptions{}); err != nil || ds.Name != "keeplog" {
		t.Fatalf("DaemonSet %+v, %v", ds, err)
	}
	if _, err := c.Leases("kube-system").Get(ctx, "keeplog-gc", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("missing Lease: %v, want NotFound", err)
	}
	holder := "node-a"
	if l, err := c.Leases("kube-system").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "keeplog-gc"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}, metav1.CreateOptions{}); err != nil || *l.Spec.HolderIdentity != "node-a" {
		t.Fatalf("create Lease %+v, %v", l, err)
	}
	if tr, err := c.TokenReviews().Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: "t"}}, metav1.CreateOptions{}); err != nil || tr.Spec.Token != "t" {
		t.Fatalf("TokenReview %+v, %v", tr, err)
	}
	if sar, err := c.SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{User: "u"}}, metav1.CreateOptions{}); err != nil || sar.Spec.User != "u" {
		t.Fatalf("SubjectAccessReview %+v, %v", sar, err)
	}

	const protobuf = "application/vnd.kubernetes.protobuf"
	for _, want := range []struct{ key, query, contentType, body string }{
		{"GET /api/v1/namespaces/shop/pods/web-0", "", "", ""},
		{"GET /api/v1/pods", "fieldSelector=spec.nodeName%3Dnode-a", "", ""},
		{"PATCH /api/v1/persistentvolumes/pv-1", "", "application/merge-patch+json", `{"metadata":{"annotations":{"a":"b"}}}`},
		{"PATCH /api/v1/namespaces/shop/pods/web-0", "", "application/merge-patch+json", `{"metadata":{"annotations":{"c":"d"}}}`},
		{"GET /api/v1/nodes/node-a", "", "", ""},
		{"GET /apis/apps/v1/namespaces/kube-system/daemonsets/keeplog", "", "", ""},
		{"POST /apis/coordination.k8s.io/v1/namespaces/kube-system/leases", "", protobuf, ""},
		{"POST /apis/authentication.k8s.io/v1/tokenreviews", "", protobuf, ""},
		{"POST /apis/authorization.k8s.io/v1/subjectaccessreviews", "", protobuf, ""},
	} {
		r := a.wait(t, want.key)
		if r.query != want.query || !strings.HasPrefix(r.accept, protobuf+",") || r.contentType != want.contentType ||
			(want.body != "" && string(r.body) != want.body) {
			t.Errorf("%s: query %q accept %q content type %q body %q; want query %q, protobuf preferred, content type %q, body %q",
				want.key, r.query, r.accept, r.contentType, r.body, want.query, want.contentType, want.body)
		}
	}
}

func TestOwner(t *testing.T) {
	a := newAPI(t)
	c := a.clients(t)
	ctx := context.Background()
	a.answer("GET /apis/apps/v1/namespaces/shop/replicasets/web-7d9f8", `{"kind":"ReplicaSet","apiVersion":"apps/v1","metadata":{"name":"web-7d9f8","uid":"u-rs",
		"ownerReferences":[{"apiVersion":"apps/v1","kind":"Deployment","name":"web","uid":"u-web","controller":true}]}}`)
	a.answer("GET /apis/batch/v1/namespaces/shop/cronjobs/nightly", `{"kind":"CronJob","apiVersion":"batch/v1","metadata":{"name":"nightly","uid":"u-cj"}}`)
	a.answer("GET /api/v1/namespaces/shop/replicationcontrollers/old", `{"kind":"ReplicationController","apiVersion":"v1","metadata":{"name":"old","uid":"u-rc"}}`)
	rs, ok, err := c.Owner(ctx, "apps", "ReplicaSet", "shop", "web-7d9f8")
	if err != nil || !ok || rs.GetUID() != "u-rs" || len(rs.GetOwnerReferences()) != 1 || rs.GetOwnerReferences()[0].Name != "web" {
		t.Fatalf("ReplicaSet %v %v %v", rs, ok, err)
	}
	if cj, ok, err := c.Owner(ctx, "batch", "CronJob", "shop", "nightly"); err != nil || !ok || cj.GetUID() != "u-cj" {
		t.Fatalf("CronJob %v %v %v", cj, ok, err)
	}
	if rc, ok, err := c.Owner(ctx, "", "ReplicationController", "shop", "old"); err != nil || !ok || rc.GetUID() != "u-rc" {
		t.Fatalf("ReplicationController %v %v %v", rc, ok, err)
	}
	if obj, ok, err := c.Owner(ctx, "apps", "Deployment", "shop", "gone"); !ok || obj != nil || !apierrors.IsNotFound(err) {
		t.Fatalf("missing Deployment: %v %v %v, want NotFound", obj, ok, err)
	}
	for _, kind := range []struct{ group, kind string }{{"example.com", "Rollout"}, {"", "Pod"}, {"apps", "ControllerRevision"}} {
		if obj, ok, err := c.Owner(ctx, kind.group, kind.kind, "shop", "x"); ok || obj != nil || err != nil {
			t.Errorf("%s/%s: %v %v %v, want not followed", kind.group, kind.kind, obj, ok, err)
		}
	}
	for _, p := range []string{"/apis/apps/v1/namespaces/shop/deployments/gone", "/apis/batch/v1/namespaces/shop/cronjobs/nightly"} {
		a.wait(t, "GET "+p)
	}
	if n := len(a.requests()); n != 4 {
		t.Errorf("%d requests %v, want 4 (none for kinds not followed)", n, a.requests())
	}
}

func TestPodExecURL(t *testing.T) {
	c := newAPI(t).clients(t)
	u := c.PodExecURL("ns", "p", &corev1.PodExecOptions{Container: "app", Command: []string{"sh", "-c", "jcmd 1 GC.heap_dump /x"}, Stdout: true, Stderr: true})
	want := "/api/v1/namespaces/ns/pods/p/exec?command=sh&command=-c&command=jcmd+1+GC.heap_dump+%2Fx&container=app&stderr=true&stdout=true"
	if got := u.RequestURI(); got != want {
		t.Fatalf("exec URL %s, want %s", got, want)
	}
}
