package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// plugin is a stand-in node plugin on loopback: /healthz ok, /metrics only with the token.
func plugin(t *testing.T, token string) (ip string, port int) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprintln(w, `keeplog_loop_last_progress_seconds{loop="gc"} 1`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	host, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ = strconv.Atoi(p)
	return host, port
}

func checkCluster(pods int, ready bool, ip string) *fake.Clientset {
	labels := map[string]string{"app": "keeplog"}
	objs := []runtime.Object{&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "keeplog", Namespace: "ns"},
		Spec:   appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}},
		Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 2}}}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	for i := range pods {
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("keeplog-%d", i), Namespace: "ns", Labels: labels},
			Spec:   corev1.PodSpec{NodeName: fmt.Sprintf("node-%d", i)},
			Status: corev1.PodStatus{PodIP: ip, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}}})
	}
	return fake.NewSimpleClientset(objs...)
}

// TestCheckPlugins: the helm test passes only when every node the DaemonSet should run on has a ready plugin that
// answers /healthz and, with the token, /metrics.
func TestCheckPlugins(t *testing.T) {
	ip, port := plugin(t, "sa-token")
	for _, tc := range []struct {
		name  string
		pods  int
		ready bool
		token string
		want  string // "" passes
	}{
		{"all nodes answer", 2, true, "sa-token", ""},
		{"a node without its pod", 1, true, "sa-token", "1 pods, 2 nodes should run one"},
		{"not ready", 2, false, "sa-token", "not ready"},
		{"metrics refuse the token", 2, true, "wrong", "HTTP 401"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := checkCluster(tc.pods, tc.ready, ip)
			var out bytes.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := checkOnce(ctx, checkConfig{Namespace: "ns", DaemonSet: "keeplog", Port: port, WithToken: true, Timeout: time.Second},
				checkDeps{DaemonSets: cs.AppsV1().DaemonSets("ns"), Pods: cs.CoreV1().Pods("ns"), HTTP: http.DefaultClient, Out: &out,
					Token: func() (string, error) { return tc.token, nil }})
			if tc.want == "" && (err != nil || strings.Count(out.String(), "answers") != 2) {
				t.Errorf("%v\n%s", err, out.String())
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}
