// Package framework deploys keeplog into the real single-node Kubernetes of package lab, the way the DaemonSet
// would run it (keeplog serving CSI and kubelet registration, csi-provisioner --node-deployment beside it), and gives
// the e2e tests and the demo the few helpers they share.
package framework

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/test/chart"
	"github.com/keeplog/keeplog/test/e2e/lab"
)

// The names the chart and the tests share: the CSI driver, its StorageClass and kubelet's directories for it.
const (
	DriverName   = api.DriverName
	StorageClass = "keeplog"
	pluginDir    = "/var/lib/kubelet/plugins/" + DriverName
	registryDir  = "/var/lib/kubelet/plugins_registry"
)

// Env is a lab with keeplog installed.
type Env struct {
	Lab    *lab.Lab
	Client kubernetes.Interface
	Root   string // keeplog's --root on the node
	Repo   string
	Socket string
	logf   func(string, ...any)

	keeplog *lab.Process
	starts  int
	base    string
	// stopSupervisor ends the loop that restarts csi-provisioner; supervised is closed when it has ended.
	stopSupervisor context.CancelFunc
	supervised     chan struct{}
}

// Setup starts the lab, applies the project's CSIDriver and StorageClass, starts keeplog and csi-provisioner, and
// waits until kubelet has registered the driver. On error everything started is stopped.
func Setup(ctx context.Context, logf func(string, ...any)) (_ *Env, err error) {
	repo, err := chart.RepoRoot()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(repo, "bin", "keeplog")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("keeplog binary %s missing (run make build): %w", bin, err)
	}
	base, err := os.MkdirTemp("", "keeplog-e2e-")
	if err != nil {
		return nil, err
	}
	l, err := lab.Start(ctx, lab.Config{WorkDir: filepath.Join(base, "lab"), Logf: logf})
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(base))
	}
	e := &Env{Lab: l, Client: l.Client(), Root: filepath.Join(base, "root"), Repo: repo, base: base, logf: logf,
		Socket: filepath.Join(pluginDir, "csi.sock")}
	defer func() {
		if err != nil {
			if terr := e.Teardown(context.Background()); terr != nil {
				logf("teardown after a failed setup: %v", terr)
			}
		}
	}()
	for _, f := range []string{"deploy/csidriver.yaml", "deploy/storageclass.yaml"} {
		if out, err := l.Kubectl(ctx, "apply", "-f", filepath.Join(repo, f)); err != nil {
			return nil, fmt.Errorf("apply %s: %v: %s", f, err, out)
		}
	}
	if err := e.StartKeeplog(ctx); err != nil {
		return nil, err
	}
	p, err := l.StartProcess("csi-provisioner-1", e.provisionerArgs(), e.provisionerEnv())
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	e.stopSupervisor, e.supervised = cancel, make(chan struct{})
	go e.superviseProvisioner(sctx, p)
	return e, nil
}

// superviseProvisioner restarts csi-provisioner when it exits, as kubelet restarts a DaemonSet's sidecar container:
// csi-provisioner exits on purpose when it loses its connection to the CSI driver (keeplog restarted).
func (e *Env) superviseProvisioner(ctx context.Context, p *lab.Process) {
	defer close(e.supervised)
	for n := 2; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-p.Done():
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		next, err := e.Lab.StartProcess(fmt.Sprintf("csi-provisioner-%d", n), e.provisionerArgs(), e.provisionerEnv())
		if err != nil {
			e.logf("restart csi-provisioner: %v", err)
			return
		}
		e.logf("csi-provisioner exited; restarted it as pid %d", next.Pid())
		p = next
	}
}

// StartKeeplog starts (or restarts) the node plugin with the flags the DaemonSet uses and waits for kubelet to list
// the driver on the node's CSINode object. extra flags come last and so override the defaults.
func (e *Env) StartKeeplog(ctx context.Context, extra ...string) error {
	e.starts++
	argv := []string{filepath.Join(e.Repo, "bin", "keeplog"),
		"--endpoint=unix://" + e.Socket,
		"--node-id=" + e.Lab.NodeName(),
		"--root=" + e.Root,
		"--kubeconfig=" + e.Lab.Kubeconfig(),
		"--kubelet-registration-dir=" + registryDir,
		"--http-address=127.0.0.1:0",
		"--pod-logs-dir=" + e.PodLogsDir(),
		"--describe-interval=2s",
		"--v=4",
	}
	argv = append(argv, extra...)
	p, err := e.Lab.StartProcess(fmt.Sprintf("keeplog-%d", e.starts), argv, nil)
	if err != nil {
		return err
	}
	e.keeplog = p
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		if p.Exited() {
			return false, fmt.Errorf("keeplog exited: %s", p.LogTail(30))
		}
		n, err := e.Client.StorageV1().CSINodes().Get(ctx, e.Lab.NodeName(), metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, d := range n.Spec.Drivers {
			if d.Name == DriverName && d.NodeID == e.Lab.NodeName() {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("kubelet did not register %s: %w\nkeeplog log:\n%s", DriverName, err, p.LogTail(30))
	}
	return nil
}

// PodLogsDir is kubelet's directory of container logs (its /var/log/pods).
func (e *Env) PodLogsDir() string { return filepath.Join(e.Lab.LogDir(), "pods") }

// UnreachableKubeconfig writes a kubeconfig whose API server does not answer (nothing listens on port 1).
func (e *Env) UnreachableKubeconfig() (string, error) {
	path := filepath.Join(e.base, "unreachable.kubeconfig")
	cfg := "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster: {server: \"https://127.0.0.1:1\"}\n" +
		"users:\n- name: u\n  user: {token: none}\ncontexts:\n- name: c\n  context: {cluster: gone, user: u}\ncurrent-context: c\n"
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// KillKeeplog ends the node plugin with SIGKILL, as a crash would.
func (e *Env) KillKeeplog() error {
	if err := e.keeplog.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-e.keeplog.Done()
	return nil
}

// KeeplogLog returns the last lines of the running plugin's log.
func (e *Env) KeeplogLog(n int) string { return e.keeplog.LogTail(n) }

// Teardown deletes every pod while keeplog still runs (so kubelet can unpublish), stops the lab, checks that nothing
// is left mounted under the root and removes the temp directory.
func (e *Env) Teardown(ctx context.Context) error {
	var errs []string
	if e.stopSupervisor != nil {
		e.stopSupervisor()
		<-e.supervised
	}
	if err := e.deleteAllPods(ctx); err != nil {
		errs = append(errs, err.Error())
	}
	if err := e.Lab.Stop(); err != nil {
		errs = append(errs, err.Error())
	}
	if mounts := MountsUnder(e.base); len(mounts) > 0 {
		errs = append(errs, fmt.Sprintf("still mounted under %s: %v", e.base, mounts))
	} else if os.Getenv("KEEPLOG_E2E_KEEP") == "" {
		if err := os.RemoveAll(e.base); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("teardown: %s", strings.Join(errs, "; "))
	}
	return nil
}

func (e *Env) deleteAllPods(ctx context.Context) error {
	nss, err := e.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, ns := range nss.Items {
		if strings.HasPrefix(ns.Name, "kube-") {
			continue
		}
		// Controllers first, or they recreate the pods we delete.
		apps := e.Client.AppsV1()
		for _, del := range []func() error{
			func() error {
				return apps.Deployments(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
			},
			func() error {
				return apps.StatefulSets(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
			},
			func() error {
				return apps.ReplicaSets(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
			},
		} {
			if err := del(); err != nil {
				return err
			}
		}
		if err := e.Client.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			return err
		}
	}
	return wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := e.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			if !strings.HasPrefix(p.Namespace, "kube-") {
				return false, nil
			}
		}
		return true, nil
	})
}

// MountsUnder lists the mount points below dir, from /proc/self/mountinfo.
func MountsUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// PodDir is where keeplog keeps a pod's files on the node.
func (e *Env) PodDir(p *corev1.Pod) string {
	return filepath.Join(e.Root, p.Namespace+"_"+p.Name+"_"+string(p.UID))
}

// CreateNamespace makes a fresh namespace for one scenario.
func (e *Env) CreateNamespace(ctx context.Context, name string) error {
	_, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := e.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

// PodSpec is a hostNetwork busybox pod that runs script with the keeplog volume at /logs.
func (e *Env) PodSpec(script string, vol corev1.Volume) corev1.PodSpec {
	grace := int64(1)
	return corev1.PodSpec{
		HostNetwork:                   true,
		TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{
			Name: "app", Image: e.Lab.BusyboxImage(), ImagePullPolicy: corev1.PullNever,
			Command:      []string{"sh", "-c", script},
			VolumeMounts: []corev1.VolumeMount{{Name: vol.Name, MountPath: "/logs"}},
		}},
		Volumes: []corev1.Volume{vol},
	}
}

// WaitPodRunning waits for the pod to run and returns it.
func (e *Env) WaitPodRunning(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 120*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := e.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pod = p
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			return false, fmt.Errorf("pod %s/%s ended in phase %s", ns, name, p.Status.Phase)
		}
		return p.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		return pod, fmt.Errorf("pod %s/%s not running: %w\n%s", ns, name, err, e.describe(ctx, ns, name))
	}
	return pod, nil
}

func (e *Env) describe(ctx context.Context, ns, name string) string {
	out, _ := e.Lab.Kubectl(ctx, "describe", "pod", "-n", ns, name)
	return out + "\nkeeplog log:\n" + e.keeplog.LogTail(20)
}

// DeletePodAndWait deletes a pod and waits until the API no longer has it (kubelet has unpublished its volumes).
// A controller may recreate a pod of the same name (a StatefulSet does): a pod with another UID counts as gone.
func (e *Env) DeletePodAndWait(ctx context.Context, ns, name string) error {
	old, err := e.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := e.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := e.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || (err == nil && p.UID != old.UID), nil
	})
	if err != nil {
		return fmt.Errorf("pod %s/%s (uid %s) not gone: %w", ns, name, old.UID, err)
	}
	return nil
}

// WaitFileContains waits until a file on the node holds want.
func WaitFileContains(ctx context.Context, path, want string) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		data, err := os.ReadFile(path)
		last = string(data)
		return err == nil && strings.Contains(last, want), nil
	})
	if err != nil {
		return fmt.Errorf("%s does not contain %q (has %q): %w", path, want, last, err)
	}
	return nil
}

// Tree lists the files below dir, one per line, as a user would look at them (keeplog's records at the top are left out).
func Tree(dir string) string {
	out, err := exec.Command("find", dir, "-not", "-path", filepath.Join(dir, ".keeplog")+"*", "-printf", "%M %8s  %P\n").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("find %s: %v: %s", dir, err, out)
	}
	return string(out)
}

// WaitNoPods waits until no pod matches the label selector in ns (their volumes are unpublished).
func (e *Env) WaitNoPods(ctx context.Context, ns, selector string) error {
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		return err == nil && len(list.Items) == 0, nil
	})
}

// SetupTest is Setup for one test: a setup error fails the test, and the lab is torn down when the test ends.
func SetupTest(t testing.TB) *Env {
	t.Helper()
	env, err := Setup(context.Background(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Teardown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return env
}
