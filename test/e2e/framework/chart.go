package framework

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/keeplog/keeplog/test/chart"
	keeplogimage "github.com/keeplog/keeplog/test/e2e/images/keeplog"
	"github.com/keeplog/keeplog/test/e2e/lab"
)

// ChartProvisionerImage is the csi-provisioner image the chart e2e builds and imports into the lab's containerd
// (pods use it with imagePullPolicy: Never). keeplog's own image is `make image`'s (KeeplogImage).
const ChartProvisionerImage = "keeplog.local/e2e/csi-provisioner:" + lab.ProvisionerVersion

// KeeplogImage is what `make image` wrote for this machine's architecture: its docker-archive
// (bin/image/keeplog-linux-GOARCH.tar) and the reference it is tagged with (bin/image/ref). The chart e2e imports
// exactly that file, so what a user builds is what is tested.
func KeeplogImage(repo string) (archive, ref string, err error) {
	archive = filepath.Join(repo, "bin", "image", "keeplog-linux-"+runtime.GOARCH+".tar")
	data, err := os.ReadFile(filepath.Join(repo, "bin", "image", "ref"))
	if err == nil {
		_, err = os.Stat(archive)
	}
	if err != nil {
		return "", "", fmt.Errorf("no image from `make image` (make e2e builds it): %w", err)
	}
	return archive, strings.TrimSpace(string(data)), nil
}

// splitRef splits repository:tag at the last colon after the last slash.
func splitRef(ref string) (repository, tag string) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, "latest"
	}
	return ref[:i], ref[i+1:]
}

// provisionerArgs is csi-provisioner's argv for the host-process deployment: the lab's arguments plus storage capacity
// tracking, as the chart's DaemonSet runs it. deploy/csidriver.yaml (generated from the chart) says
// storageCapacity: true, so the scheduler only places a pod with a keeplog claim on a node that has a
// CSIStorageCapacity object for the claim's StorageClass. Without a DaemonSet pod there is no owner (-1).
func (e *Env) provisionerArgs() []string {
	return append(e.Lab.ProvisionerArgs(e.Socket),
		"--enable-capacity=true",
		"--capacity-ownerref-level=-1",
		"--capacity-poll-interval=10s",
	)
}

// provisionerEnv is csi-provisioner's environment: its node (--node-deployment) and the namespace of its
// CSIStorageCapacity objects.
func (e *Env) provisionerEnv() []string {
	return []string{"NODE_NAME=" + e.Lab.NodeName(), "NAMESPACE=default"}
}

// SetupLabOnly starts the lab and nothing of keeplog: no CSIDriver, no StorageClass, no host processes. For tests
// that install keeplog themselves (the Helm chart), so no host keeplog serves the same driver name and socket.
// Teardown stops it; uninstall what the test installed first (a DaemonSet's pods are not deleted by Teardown).
func SetupLabOnly(ctx context.Context, logf func(string, ...any)) (*Env, error) {
	repo, err := chart.RepoRoot()
	if err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", "keeplog-e2e-")
	if err != nil {
		return nil, err
	}
	l, err := lab.Start(ctx, lab.Config{WorkDir: filepath.Join(base, "lab"), Logf: logf})
	if err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	return &Env{Lab: l, Client: l.Client(), Root: filepath.Join(base, "root"), Repo: repo, base: base, logf: logf,
		Socket: filepath.Join(pluginDir, "csi.sock")}, nil
}

// WorkDir is the test's temporary directory (the lab's work dir and keeplog's root are inside it).
func (e *Env) WorkDir() string { return e.base }

// ImportChartImages imports `make image`'s keeplog image (KeeplogImage) and a csi-provisioner image built here as a
// docker-archive into the lab's containerd, with `ctr -n k8s.io images import` as docs/install.md tells users.
func (e *Env) ImportChartImages(ctx context.Context) error {
	keeplogArchive, _, err := KeeplogImage(e.Repo)
	if err != nil {
		return err
	}
	provisioner := filepath.Join(e.base, "csi-provisioner.tar")
	if err := keeplogimage.WriteProvisioner(provisioner, ChartProvisionerImage, lab.DefaultProvisionerBin()); err != nil {
		return err
	}
	for _, out := range []string{keeplogArchive, provisioner} {
		if err := e.ImportImage(ctx, out); err != nil {
			return err
		}
	}
	return nil
}

// ImportImage imports one image archive into the lab's containerd (namespace k8s.io, kubelet's).
func (e *Env) ImportImage(ctx context.Context, archive string) error {
	cmd := exec.CommandContext(ctx, "ctr", "-n", "k8s.io", "--address", e.Lab.ContainerdSocket(), "images", "import", archive)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr images import %s: %w: %s", archive, err, b)
	}
	e.logf("imported %s: %s", archive, strings.TrimSpace(string(b)))
	return nil
}

// Helm runs the project's Helm (hack/helm.sh) against the lab, with its cache and config inside the test's temp dir.
func (e *Env) Helm(ctx context.Context, args ...string) (string, error) {
	bin, err := chart.Helm(ctx, e.Repo)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", e.Lab.Kubeconfig()}, args...)...)
	home := filepath.Join(e.base, "helm")
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// The ServiceAccount the lab's chart values bind to the metrics-reader ClusterRole (metrics.readers).
const (
	ChartScraperNamespace = "chart-metrics"
	ChartScraper          = "scraper"
)

// ChartValues are the values that make the chart run in the lab: the imported images, keeplog's root in the test's
// temp dir, the lab kubelet's pod log directory, a free metrics port, and the API server on loopback (there is no
// kube-proxy, so the kubernetes Service's ClusterIP the in-cluster configuration would use leads nowhere; the
// host-network pods reach kube-apiserver on 127.0.0.1 and its certificate names 127.0.0.1). Written to a file for -f.
func (e *Env) ChartValues() (path string, metricsPort int, err error) {
	values, metricsPort, err := e.ChartValuesMap()
	if err != nil {
		return "", 0, err
	}
	path, err = e.WriteValues("lab-values.yaml", values)
	return path, metricsPort, err
}

// WriteValues writes chart values to a file in the test's directory for --values.
func (e *Env) WriteValues(name string, values map[string]any) (string, error) {
	data, err := yaml.Marshal(values)
	if err != nil {
		return "", err
	}
	path := filepath.Join(e.base, name)
	return path, os.WriteFile(path, data, 0o644)
}

// ChartValuesMap is ChartValues before it is written: for tests that add their own values or, for an older chart
// whose schema refuses values it does not have, remove some.
func (e *Env) ChartValuesMap() (values map[string]any, metricsPort int, err error) {
	u, err := url.Parse(e.Lab.APIServerURL())
	if err != nil {
		return nil, 0, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, 0, err
	}
	metricsPort = l.Addr().(*net.TCPAddr).Port
	l.Close()
	_, ref, err := KeeplogImage(e.Repo)
	if err != nil {
		return nil, 0, err
	}
	repository, tag := splitRef(ref)
	values = map[string]any{
		"image": map[string]any{"repository": repository, "tag": tag, "pullPolicy": "Never"},
		"provisioner": map[string]any{
			"image":     map[string]any{"repository": strings.Split(ChartProvisionerImage, ":")[0], "tag": lab.ProvisionerVersion, "pullPolicy": "Never"},
			"verbosity": 5,
		},
		"keeplog": map[string]any{
			"root":             e.Root,
			"podLogsDir":       e.PodLogsDir(),
			"describeInterval": "2s",
			"verbosity":        4,
		},
		"metrics": map[string]any{"port": metricsPort, "readers": []any{
			map[string]any{"kind": "ServiceAccount", "name": ChartScraper, "namespace": ChartScraperNamespace}}},
		"apiServer": map[string]any{"host": u.Hostname(), "port": u.Port()},
		// helm test's pod: no pod network in the lab, so it reaches the plugin on the node's address from the node.
		"tests": map[string]any{"enabled": true, "hostNetwork": true},
	}
	return values, metricsPort, nil
}

// WaitDaemonSetPod waits until the DaemonSet's pod on the node runs with every container ready and returns it; on
// timeout the error carries the pod's description and its containers' logs.
func (e *Env) WaitDaemonSetPod(ctx context.Context, ns, selector string, timeout time.Duration) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil || len(list.Items) != 1 {
			return false, nil
		}
		pod = &list.Items[0]
		if pod.Status.Phase != corev1.PodRunning || len(pod.Status.ContainerStatuses) != len(pod.Spec.Containers) {
			return false, nil
		}
		for _, c := range pod.Status.ContainerStatuses {
			if !c.Ready {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		msg := "no pod"
		if pod != nil {
			msg = e.PodDiagnostics(ctx, pod)
		}
		return pod, fmt.Errorf("DaemonSet pod (%s) in %s not running and ready: %w\n%s", selector, ns, err, msg)
	}
	return pod, nil
}

// PodDiagnostics is `kubectl describe pod` plus the tail of each container's log as kubelet wrote it.
func (e *Env) PodDiagnostics(ctx context.Context, pod *corev1.Pod) string {
	out, err := e.Lab.Kubectl(ctx, "describe", "pod", "-n", pod.Namespace, pod.Name)
	if err != nil {
		out += "\n" + err.Error()
	}
	var b strings.Builder
	b.WriteString(out)
	for _, c := range pod.Spec.Containers {
		fmt.Fprintf(&b, "\n--- log of container %s:\n%s", c.Name, e.ContainerLog(pod, c.Name, 40))
	}
	return b.String()
}

// ContainerLog returns the last n lines kubelet wrote for a container of a pod (all its restarts), read from the
// node's pod log directory.
func (e *Env) ContainerLog(pod *corev1.Pod, container string, n int) string {
	dir := filepath.Join(e.PodLogsDir(), pod.Namespace+"_"+pod.Name+"_"+string(pod.UID), container)
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	var lines []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines = append(lines, strings.Split(strings.TrimRight(string(data), "\n"), "\n")...)
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ApplyCRDs applies every CustomResourceDefinition file in dir and waits until the API server serves them.
func (e *Env) ApplyCRDs(ctx context.Context, dir string) error {
	if out, err := e.Lab.Kubectl(ctx, "apply", "--server-side", "-f", dir); err != nil {
		return fmt.Errorf("apply CRDs from %s: %w\n%s", dir, err, out)
	}
	out, err := e.Lab.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "-f", dir)
	if err != nil {
		return fmt.Errorf("CRDs from %s not established: %w\n%s", dir, err, out)
	}
	e.logf("CRDs established:\n%s", out)
	return nil
}
