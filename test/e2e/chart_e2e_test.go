//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/test/chart"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

const (
	chartRelease   = "keeplog"
	chartNamespace = "keeplog"
	chartSelector  = "app.kubernetes.io/name=keeplog,app.kubernetes.io/instance=keeplog"
)

// chartScenarioNamespaces hold the scenarios' pods, deleted before the release is uninstalled.
var chartScenarioNamespaces = []string{"chart-generic", "chart-inline", chartScraperNamespace}

// chartMetricsPort is the node port keeplog serves /healthz and /metrics on (metrics.port), set by chartInstall.
var chartMetricsPort int

// TestChart installs charts/keeplog into the real single-node Kubernetes: every object the chart renders (default
// values and the all-values file) and deploy/ are accepted by kube-apiserver, then the chart is installed with keeplog
// and csi-provisioner from images built without Docker, and a pod's generic ephemeral volume outlives the pod
// through the installed DaemonSet. No host keeplog runs here (SetupLabOnly).
func TestChart(t *testing.T) {
	ctx := context.Background()
	c := setupChartLab(ctx, t, chartScenarioNamespaces...)
	env := c.env
	mustNamespace(ctx, t, env, "keeplog-all")
	if !t.Run("ServerAcceptsEveryRenderedObject", func(t *testing.T) { chartDryRun(ctx, t, env) }) {
		t.FailNow()
	}
	if !t.Run("Install", func(t *testing.T) { chartInstall(ctx, t, c) }) {
		t.FailNow()
	}
	t.Run("MetricsNeedKubernetesAuthentication", func(t *testing.T) { chartMetricsAuth(ctx, t, env) })
	t.Run("GenericEphemeralVolumeOutlivesPod", func(t *testing.T) { chartGenericEphemeral(ctx, t, env) })
	t.Run("InlineEphemeralVolumeOutlivesPod", func(t *testing.T) { chartInlineEphemeral(ctx, t, env) })
	t.Run("HelmTest", func(t *testing.T) { chartHelmTest(ctx, t, env) })
	t.Run("NoRBACDenials", func(t *testing.T) { chartNoRBACDenials(ctx, t, env) })
	t.Run("UninstallRemovesCapacityObjects", func(t *testing.T) { chartUninstall(ctx, t, c) })
}

// chartDryRun: kubectl apply --dry-run=server of the default render, the all-values render (with the Prometheus
// Operator's and OpenShift's CRDs applied first, from their published YAML in test/e2e/testdata/crds, so the
// ServiceMonitor, PrometheusRule and SecurityContextConstraints are checked against their real schemas) and deploy/
// (kustomize).
func chartDryRun(ctx context.Context, t *testing.T, env *framework.Env) {
	helm, err := chart.Helm(ctx, env.Repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.ApplyCRDs(ctx, filepath.Join(env.Repo, "test", "e2e", "testdata", "crds")); err != nil {
		t.Fatal(err)
	}
	// A pod's ServiceAccount must exist even in a dry run (admission looks it up), and a dry run creates none: the
	// all-values helm test pod's is made for real.
	if _, err := env.Lab.Kubectl(ctx, "create", "serviceaccount", "-n", "keeplog-all", "keeplog-all-test"); err != nil {
		t.Fatal(err)
	}
	allValues := filepath.Join(env.Repo, "test", "chart", "testdata", "all-values.yaml")
	for _, tc := range []struct {
		name string
		opts chart.Options
	}{
		{"defaults", chart.Options{Namespace: chartNamespace}},
		{"all-values", chart.Options{Namespace: "keeplog-all", ValuesFiles: []string{allValues}}},
	} {
		out, err := chart.Render(ctx, helm, env.Repo, tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		docs := chart.Documents(out)
		file := filepath.Join(env.WorkDir(), "render-"+tc.name+".yaml")
		if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		// --validate=strict: unknown or duplicate fields are errors, not warnings.
		res, err := env.Lab.Kubectl(ctx, "apply", "--dry-run=server", "--validate=strict", "-f", file)
		if err != nil {
			t.Fatalf("%s render refused by the API server: %v", tc.name, err)
		}
		if n := strings.Count(res, "(server dry run)"); n != len(docs) {
			t.Errorf("%s: %d of %d objects accepted:\n%s", tc.name, n, len(docs), res)
		}
		t.Logf("%s: %d objects accepted by the API server", tc.name, len(docs))
	}
	res, err := env.Lab.Kubectl(ctx, "apply", "--dry-run=server", "--validate=strict", "-k", filepath.Join(env.Repo, "deploy"))
	if err != nil {
		t.Fatalf("deploy/ refused by the API server: %v", err)
	}
	t.Logf("deploy/:\n%s", res)
}

// chartInstall: images imported with ctr, helm install, the DaemonSet's pod runs and is ready (liveness probe on
// /healthz), kubelet registered the driver from inside the container, csi-provisioner published capacity owned by
// the DaemonSet, and keeplog logs JSON.
func chartInstall(ctx context.Context, t *testing.T, c *chartLab) {
	env := c.env
	pod, port := c.install(ctx, t, nil)
	chartMetricsPort = port
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		n, err := env.Client.StorageV1().CSINodes().Get(ctx, env.Lab.NodeName(), metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, d := range n.Spec.Drivers {
			if d.Name == framework.DriverName && d.NodeID == env.Lab.NodeName() {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("kubelet did not register %s from the DaemonSet's pod: %v\n%s", framework.DriverName, err, env.PodDiagnostics(ctx, pod))
	}
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := env.Client.StorageV1().CSIStorageCapacities(chartNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range list.Items {
			owned := len(c.OwnerReferences) == 1 && c.OwnerReferences[0].Kind == "DaemonSet" && c.OwnerReferences[0].Name == chartRelease
			if c.StorageClassName == framework.StorageClass && owned && c.Capacity != nil && !c.Capacity.IsZero() {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no CSIStorageCapacity for StorageClass %s owned by the DaemonSet: %v\n%s", framework.StorageClass, err, env.PodDiagnostics(ctx, pod))
	}
	if body, err := httpGet(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", port)); err != nil || strings.TrimSpace(body) != "ok" {
		t.Errorf("keeplog /healthz on the node's port %d: %q, %v", port, body, err)
	}
	// --log-format=json (the chart's default): kubelet's copy of keeplog's stderr is one JSON object per line.
	logLines := strings.Split(env.ContainerLog(pod, "keeplog", 1000), "\n")
	parsed := 0
	for _, l := range logLines {
		// CRI log format: <time> <stream> <P|F> <message>
		f := strings.SplitN(l, " ", 4)
		var obj map[string]any
		if len(f) == 4 && json.Unmarshal([]byte(f[3]), &obj) == nil && obj["msg"] != nil {
			parsed++
		}
	}
	if parsed == 0 || parsed < len(logLines)/2 {
		t.Errorf("keeplog's log is not JSON (%d of %d lines parse):\n%s", parsed, len(logLines), strings.Join(logLines[:min(10, len(logLines))], "\n"))
	}
	for _, c := range pod.Status.ContainerStatuses {
		if c.RestartCount != 0 {
			t.Errorf("container %s restarted %d times:\n%s", c.Name, c.RestartCount, env.ContainerLog(pod, c.Name, 30))
		}
	}
}

// chartGenericEphemeral is scenario 1 through the installed chart: a pod's generic ephemeral volume from the chart's
// StorageClass, a file written, the pod deleted, the file still on the node under keeplog's root, the PV Released.
func chartGenericEphemeral(ctx context.Context, t *testing.T, env *framework.Env) {
	ns := "chart-generic"
	mustNamespace(ctx, t, env, ns)
	pod := chartRunPod(ctx, t, env, ns, "java-app", corev1.Volume{Name: "logs",
		VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: claimTemplate()}}})
	dir := env.PodDir(pod)
	if err := framework.WaitFileContains(ctx, filepath.Join(dir, "app.log"), "hello from"); err != nil {
		t.Fatalf("%v\n%s", err, keeplogDiagnostics(ctx, env))
	}
	pvc, err := env.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "java-app-logs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvName := pvc.Spec.VolumeName
	if pv, err := env.Client.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{}); err != nil ||
		pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != framework.DriverName {
		t.Fatalf("PV %s: %v %+v", pvName, err, pv)
	}
	if err := env.DeletePodAndWait(ctx, ns, pod.Name); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "app.log")); err != nil || !strings.Contains(string(data), "hello from") {
		t.Fatalf("the file did not survive the pod: %v %q", err, data)
	}
	// The unmount inside keeplog's container reached the node (Bidirectional propagation both ways).
	assertNotMounted(t, env, pod)
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pv, err := env.Client.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
		return err == nil && pv.Status.Phase == corev1.VolumeReleased, nil
	}); err != nil {
		t.Fatalf("PV %s not Released after its claim went: %v", pvName, err)
	}
	// The publish and unpublish were served by the installed plugin and counted on its metrics port.
	metrics, err := scrape(ctx, t, env)
	for _, m := range []string{"/csi.v1.Node/NodePublishVolume", "/csi.v1.Node/NodeUnpublishVolume", "/csi.v1.Controller/CreateVolume"} {
		if want := `keeplog_csi_operations_total{code="OK",method="` + m + `"}`; err != nil || !strings.Contains(metrics, want) {
			t.Errorf("/metrics has no %s: %v", want, err)
		}
	}
	t.Logf("after the pod was deleted, on the node:\n%s", framework.Tree(dir))
}

// chartInlineEphemeral: a CSI inline volume (the chart's CSIDriver allows Ephemeral) through the installed plugin.
func chartInlineEphemeral(ctx context.Context, t *testing.T, env *framework.Env) {
	ns := "chart-inline"
	mustNamespace(ctx, t, env, ns)
	pod := chartRunPod(ctx, t, env, ns, "batch", corev1.Volume{Name: "logs",
		VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: framework.DriverName}}})
	dir := env.PodDir(pod)
	if err := framework.WaitFileContains(ctx, filepath.Join(dir, "app.log"), "hello from"); err != nil {
		t.Fatalf("%v\n%s", err, keeplogDiagnostics(ctx, env))
	}
	if err := env.DeletePodAndWait(ctx, ns, pod.Name); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "app.log")); err != nil || !strings.Contains(string(data), "hello from") {
		t.Fatalf("inline volume's file gone with the pod: %q %v", data, err)
	}
	assertNotMounted(t, env, pod)
}

// chartNoRBACDenials: after the scenarios, neither container logged a request the chart's RBAC refused (the leader
// election, the pod informer, PV annotations, Events, capacity objects all went through).
func chartNoRBACDenials(ctx context.Context, t *testing.T, env *framework.Env) {
	list, err := env.Client.CoreV1().Pods(chartNamespace).List(ctx, metav1.ListOptions{LabelSelector: chartSelector})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("keeplog pods: %v %v", err, list)
	}
	pod := &list.Items[0]
	for _, c := range pod.Spec.Containers {
		for _, line := range strings.Split(env.ContainerLog(pod, c.Name, 1_000_000), "\n") {
			if strings.Contains(line, "forbidden") {
				t.Errorf("container %s was refused by RBAC: %s", c.Name, line)
			}
		}
	}
}

// chartRunPod creates a busybox pod running the writer script with vol at /logs and waits until it runs; on timeout
// it shows the pod and the installed plugin's logs.
func chartRunPod(ctx context.Context, t *testing.T, env *framework.Env, ns, name string, vol corev1.Volume) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: env.PodSpec(writer, vol)}
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := env.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pod = p
		return p.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s not running: %v\n%s\n%s", ns, name, err, env.PodDiagnostics(ctx, pod), keeplogDiagnostics(ctx, env))
	}
	return pod
}

// chartUninstall: helm uninstall removes the DaemonSet and, through its owner references, the CSIStorageCapacity
// objects; the data stays on the node.
func chartUninstall(ctx context.Context, t *testing.T, c *chartLab) {
	env := c.env
	for _, ns := range chartScenarioNamespaces {
		if err := deleteNamespacePods(ctx, env, ns); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := env.Helm(ctx, "uninstall", chartRelease, "--namespace", chartNamespace, "--wait", "--timeout", "2m"); err != nil {
		t.Fatal(err)
	}
	c.installed = false
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := env.Client.StorageV1().CSIStorageCapacities(chartNamespace).List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) == 0, nil
	})
	if err != nil {
		t.Errorf("CSIStorageCapacity objects outlive the DaemonSet: %v", err)
	}
	if _, err := env.Client.StorageV1().CSIDrivers().Get(ctx, framework.DriverName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("CSIDriver after uninstall: %v", err)
	}
	if entries, err := os.ReadDir(env.Root); err != nil || len(entries) == 0 {
		t.Errorf("keeplog's root after uninstall: %v, %d entries", err, len(entries))
	}
}

// deleteNamespacePods deletes every pod in ns and waits until they are gone (kubelet has unpublished their volumes).
func deleteNamespacePods(ctx context.Context, env *framework.Env, ns string) error {
	if err := env.Client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return env.WaitNoPods(ctx, ns, "")
}

// keeplogDiagnostics describes the installed DaemonSet's pod and its logs.
func keeplogDiagnostics(ctx context.Context, env *framework.Env) string {
	list, err := env.Client.CoreV1().Pods(chartNamespace).List(ctx, metav1.ListOptions{LabelSelector: chartSelector})
	if err != nil || len(list.Items) == 0 {
		return fmt.Sprintf("no keeplog pod: %v", err)
	}
	return env.PodDiagnostics(ctx, &list.Items[0])
}

func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// chartHelmTest: `helm test` runs the chart's test pod (keeplog check in the plugin's image) and it passes: the
// node's plugin is ready and answers /healthz and, with the test ServiceAccount's token, /metrics.
func chartHelmTest(ctx context.Context, t *testing.T, env *framework.Env) {
	out, err := env.Helm(ctx, "test", chartRelease, "--namespace", chartNamespace, "--timeout", "3m", "--logs")
	if err != nil {
		events, _ := env.Lab.Kubectl(ctx, "get", "events", "-n", chartNamespace, "--sort-by=.lastTimestamp")
		t.Fatalf("helm test: %v\n%s\nevents:\n%s", err, out, events)
	}
	if !strings.Contains(out, "Succeeded") || !strings.Contains(out, "answers /healthz and /metrics") {
		t.Errorf("helm test output:\n%s", out)
	}
	t.Logf("helm test:\n%s", out)
}
