//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/test/e2e/framework"
)

const (
	collectPods  = 3
	collectLines = 2000
	// collectScript writes numbered lines to stdout and to two text logs, then a "heap dump" and a "core" made of
	// text lines, so that a collector that read them would show records.
	collectScript = `i=1; while [ $i -le LINES ]; do echo "stdout NAME $i"; echo "gc NAME $i" >> /logs/gc.log; echo "access NAME $i" >> /logs/access.log; i=$((i+1)); done
yes KEEPLOG-DUMP-LINE | head -n 100000 > /logs/heap.hprof
yes KEEPLOG-CORE-LINE | head -n 1000 > /logs/core.1
gzip -c /logs/gc.log > /logs/gc.log.1.gz`
)

// TestCollectorReadsKeeplog runs a real OpenTelemetry Collector (filelog receiver with the container operator, file
// exporter) configured with the shipped snippet charts/keeplog/files/collectors/otelcol-filelog.yaml, beside pods
// that write numbered stdout and gc.log/access.log lines, a dump and a core, and are deleted (grace 0) as soon as
// they finish: every line arrives exactly once with namespace, pod, uid and container right; no record comes from a
// dump, a core, an archive or a keeplog file.
func TestCollectorReadsKeeplog(t *testing.T) {
	ctx := context.Background()
	env := framework.SetupTest(t)
	col, err := env.StartCollector("otelcol", filepath.Join(env.Repo, "charts/keeplog/files/collectors/otelcol-filelog.yaml"),
		[]string{"filelog/keeplog-stdout", "filelog/keeplog-apps"})
	if err != nil {
		t.Fatal(err)
	}
	defer col.Stop()
	ns := "collect"
	mustNamespace(ctx, t, env, ns)
	pods := map[string]*corev1.Pod{}
	for i := 0; i < collectPods; i++ {
		name := fmt.Sprintf("writer-%d", i)
		script := strings.NewReplacer("LINES", fmt.Sprint(collectLines), "NAME", name).Replace(collectScript)
		spec := env.PodSpec(script, corev1.Volume{Name: "logs", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: framework.DriverName}}})
		spec.RestartPolicy = corev1.RestartPolicyNever
		spec.Containers[0].VolumeMounts[0].SubPath = "app"
		p, err := env.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels: map[string]string{"test": "collect"}}, Spec: spec}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pods[name] = p
	}
	deleteWhenFinished(ctx, t, env, ns, len(pods))
	waitUnmounted(ctx, t, env)
	t.Run("CollectorRunning", func(t *testing.T) {
		via := collected(ctx, t, env, col, pods)
		t.Logf("a collector running beside the pods: %v records by source", via)
	})
	// A collector that was down while the pods ran (a node's collector restarting, or behind): kubelet's files are
	// gone, so stdout comes from keeplog's kubelet-layout tree only, parsed by the same container operator.
	waitKubeletLogsGone(ctx, t, env, pods)
	late, err := env.StartCollector("otelcol-late", filepath.Join(env.Repo, "charts/keeplog/files/collectors/otelcol-filelog.yaml"),
		[]string{"filelog/keeplog-stdout", "filelog/keeplog-apps"})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Stop()
	t.Run("CollectorStartedAfterPodsWereDeleted", func(t *testing.T) {
		via := collected(ctx, t, env, late, pods)
		if via["keeplog-stdout"] != collectPods*collectLines {
			t.Errorf("stdout lines from keeplog's tree: %d, want all %d", via["keeplog-stdout"], collectPods*collectLines)
		}
	})
}

// collected waits for every line, stops the collector and checks what it exported; it returns the records by source.
func collected(ctx context.Context, t *testing.T, env *framework.Env, col *framework.Collector, pods map[string]*corev1.Pod) map[string]int {
	t.Helper()
	recs, err := col.WaitRecords(ctx, collectPods*collectLines*3, 5*time.Second, 2*time.Minute)
	if err != nil {
		t.Logf("waiting for the records: %v; collector log:\n%s", err, col.Log(30))
	}
	if err := col.Stop(); err != nil {
		t.Error(err)
	}
	if final, err := col.Records(); err == nil {
		recs = final
	}
	return checkRecords(t, env, pods, recs)
}

// waitKubeletLogsGone waits until kubelet has removed the pods' directories under /var/log/pods.
func waitKubeletLogsGone(ctx context.Context, t *testing.T, env *framework.Env, pods map[string]*corev1.Pod) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		for _, p := range pods {
			if _, err := os.Stat(filepath.Join(env.PodLogsDir(), p.Namespace+"_"+p.Name+"_"+string(p.UID))); err == nil {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("kubelet kept the pods' log directories: %v", err)
	}
}

// deleteWhenFinished deletes each pod with grace 0 the moment the API says it succeeded, until n were deleted.
func deleteWhenFinished(ctx context.Context, t *testing.T, env *framework.Env, ns string, n int) {
	t.Helper()
	zero := int64(0)
	deleted := map[string]bool{}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodFailed {
				return false, fmt.Errorf("pod %s failed: %+v", p.Name, p.Status)
			}
			if p.Status.Phase != corev1.PodSucceeded || deleted[p.Name] {
				continue
			}
			err := env.Client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
			if err != nil && !apierrors.IsNotFound(err) {
				return false, err
			}
			deleted[p.Name] = true
		}
		return len(deleted) == n, nil
	})
	if err != nil {
		t.Fatalf("pods not all finished and deleted (%d of %d): %v", len(deleted), n, err)
	}
}

// waitUnmounted waits until kubelet has unpublished every keeplog volume (keeplog copied stdout at the latest then).
func waitUnmounted(ctx context.Context, t *testing.T, env *framework.Env) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 90*time.Second, true, func(context.Context) (bool, error) {
		return len(framework.MountsUnder(env.Root)) == 0 && len(framework.MountsUnder("/var/lib/kubelet/pods")) == 0, nil
	})
	if err != nil {
		t.Fatalf("volumes still mounted: %v %v", framework.MountsUnder(env.Root), err)
	}
}

// checkRecords: each expected line exactly once, with the right Kubernetes attributes, and nothing else.
func checkRecords(t *testing.T, env *framework.Env, pods map[string]*corev1.Pod, recs []framework.Record) map[string]int {
	t.Helper()
	seen := map[string]int{}
	var unexpected []string
	via := map[string]int{}
	for _, r := range recs {
		path := r.Attrs["log.file.path"]
		f := strings.Fields(r.Body)
		p := pods[func() string {
			if len(f) == 3 {
				return f[1]
			}
			return ""
		}()]
		if p == nil || !recordFrom(env, p, f[0], path) {
			unexpected = append(unexpected, fmt.Sprintf("%q from %s", r.Body, path))
			continue
		}
		wantRes := map[string]string{"k8s.namespace.name": p.Namespace, "k8s.pod.name": p.Name, "k8s.pod.uid": string(p.UID), "k8s.container.name": "app"}
		for k, v := range wantRes {
			if r.Resource[k] != v {
				t.Errorf("%q from %s: %s=%q, want %q", r.Body, path, k, r.Resource[k], v)
			}
		}
		seen[r.Body]++
		via[sourceOf(env, path)]++
	}
	missing, dup := 0, 0
	for name := range pods {
		for _, kind := range []string{"stdout", "gc", "access"} {
			for i := 1; i <= collectLines; i++ {
				switch n := seen[fmt.Sprintf("%s %s %d", kind, name, i)]; {
				case n == 0:
					missing++
				case n > 1:
					dup += n - 1
				}
			}
		}
	}
	t.Logf("collector: %d records; by source %v; %d lines missing, %d duplicates, %d unexpected records",
		len(recs), via, missing, dup, len(unexpected))
	if missing > 0 || dup > 0 {
		t.Errorf("%d of %d lines missing, %d duplicates", missing, collectPods*collectLines*3, dup)
	}
	if len(unexpected) > 0 {
		sort.Strings(unexpected)
		t.Errorf("%d records that are no application line (dumps, cores, archives or keeplog's files ingested?), e.g.\n%s",
			len(unexpected), strings.Join(unexpected[:min(10, len(unexpected))], "\n"))
	}
	return via
}

// recordFrom: a line of kind comes from the file it was written to: stdout from kubelet's file or keeplog's
// kubelet-layout tree, gc/access from the pod directory's app/<kind>.log.
func recordFrom(env *framework.Env, p *corev1.Pod, kind, path string) bool {
	dir := p.Namespace + "_" + p.Name + "_" + string(p.UID)
	switch kind {
	case "stdout":
		return path == filepath.Join(env.PodLogsDir(), dir, "app", "0.log") || path == filepath.Join(env.Root, ".pods", dir, "app", "0.log")
	case "gc", "access":
		return path == filepath.Join(env.PodDir(p), "app", kind+".log")
	}
	return false
}

func sourceOf(env *framework.Env, path string) string {
	switch {
	case strings.HasPrefix(path, env.PodLogsDir()+"/"):
		return "kubelet"
	case strings.HasPrefix(path, filepath.Join(env.Root, ".pods")+"/"):
		return "keeplog-stdout"
	default:
		return "keeplog-apps"
	}
}
