package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// systemNamespaces keep their pods at Stop (the lab runs none there; users' pods go elsewhere).
func isSystemNamespace(ns string) bool {
	return ns == "kube-system" || ns == "kube-public" || ns == "kube-node-lease"
}

// WaitDefaultServiceAccount waits until the `default` ServiceAccount and the kube-root-ca.crt
// ConfigMap exist in the `default` namespace (pods there can be admitted and started).
func (l *Lab) WaitDefaultServiceAccount(ctx context.Context, timeout time.Duration) error {
	var cm *Process
	for _, p := range l.Processes() {
		if p.Name() == "kube-controller-manager" {
			cm = p
		}
	}
	return l.waitFor(ctx, cm, "ServiceAccount default/default", timeout, func(ctx context.Context) error {
		if _, err := l.client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return err
		}
		_, err := l.client.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err
	})
}

// Stop deletes the pods of all non-system namespaces gracefully (bounded wait), stops every
// process by PID (SIGTERM, then SIGKILL) in reverse start order, force-deletes containers left in
// containerd and stops their shims, unmounts everything under the kubelet root dir and the work
// dir, and removes what the lab created except the logs. Safe to call more than once.
func (l *Lab) Stop() error {
	l.stopOnce.Do(func() { l.stopErr = l.stop() })
	return l.stopErr
}

func (l *Lab) stop() error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var errs []error

	procs := l.Processes()
	byName := map[string]*Process{}
	for _, p := range procs {
		byName[p.Name()] = p
	}
	alive := func(name string) bool { p := byName[name]; return p != nil && !p.Exited() }
	if l.client != nil && alive("kube-apiserver") && alive("kubelet") {
		if err := l.deletePods(ctx, 60*time.Second); err != nil {
			errs = append(errs, err)
		}
	}

	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		if p.Name() == "containerd" && p == byName["containerd"] {
			l.cleanupContainerd(ctx, !p.Exited())
		}
		if err := p.Stop(DefaultStopTimeout); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", p.Name(), err))
		}
	}
	l.cleanupContainerd(ctx, false) // shims left behind if containerd had died early

	if l.kubeletStarted {
		if err := unmountAll(KubeletRootDir); err != nil {
			errs = append(errs, fmt.Errorf("unmount under %s: %w", KubeletRootDir, err))
		} else if l.createdKubeletDir {
			if err := removeIfUnmounted(KubeletRootDir); err != nil {
				errs = append(errs, err)
			}
		}
		removeKubeCgroups()
		l.removeLogLinks()
		if err := l.restoreSysctls(); err != nil {
			errs = append(errs, err)
		}
	}
	if l.createdRunContainerd {
		// Only when empty: a system containerd may have appeared meanwhile.
		_ = os.Remove(filepath.Join(runContainerd, "s"))
		_ = os.Remove(runContainerd)
	}
	if l.workDir != "" {
		if err := unmountAll(l.workDir); err != nil {
			errs = append(errs, fmt.Errorf("unmount under %s: %w", l.workDir, err))
		} else if err := l.removeWorkDir(); err != nil {
			errs = append(errs, err)
		}
	}
	l.logf("lab stopped in %s (logs kept in %s)", time.Since(start).Round(10*time.Millisecond), l.logDir)
	if l.lock != nil {
		_ = l.lock.Close() // releases the flock
	}
	return errors.Join(errs...)
}

// podDeleteGraceSeconds caps the grace period Stop gives each pod (busybox `sleep` as PID 1
// ignores SIGTERM, so the default 30s would be spent waiting for every such pod).
const podDeleteGraceSeconds = 5

// deletePods deletes every pod outside the system namespaces with its grace period (at most
// podDeleteGraceSeconds), waits up to
// timeout for them to go, then force-deletes the rest (containerd cleanup reaps their containers).
func (l *Lab) deletePods(ctx context.Context, timeout time.Duration) error {
	pods := l.client.CoreV1().Pods("")
	list, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list pods to delete: %w", err)
	}
	n := 0
	for _, p := range list.Items {
		if isSystemNamespace(p.Namespace) {
			continue
		}
		n++
		grace := int64(podDeleteGraceSeconds)
		if g := p.Spec.TerminationGracePeriodSeconds; g != nil && *g < grace {
			grace = max(*g, 1) // 0 would mean a forced deletion that skips the kubelet
		}
		err := l.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
		if err != nil && !apierrors.IsNotFound(err) {
			l.logf("delete pod %s/%s: %v", p.Namespace, p.Name, err)
		}
	}
	if n == 0 {
		return nil
	}
	l.logf("deleting %d pod(s)", n)
	remaining := func() ([]string, error) {
		list, err := pods.List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		var left []string
		for _, p := range list.Items {
			if !isSystemNamespace(p.Namespace) {
				left = append(left, p.Namespace+"/"+p.Name)
			}
		}
		return left, nil
	}
	err = l.waitFor(ctx, nil, "pods deleted", timeout, func(context.Context) error {
		left, err := remaining()
		if err != nil {
			return err
		}
		if len(left) > 0 {
			return fmt.Errorf("%d left: %s", len(left), strings.Join(left, ", "))
		}
		return nil
	})
	if err == nil {
		return nil
	}
	left, _ := remaining()
	zero := int64(0)
	for _, name := range left {
		ns, pod, _ := strings.Cut(name, "/")
		_ = l.client.CoreV1().Pods(ns).Delete(ctx, pod, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	}
	return fmt.Errorf("pods not gone within %s, force-deleted: %s", timeout, strings.Join(left, ", "))
}

// removeIfUnmounted removes dir recursively, but only when nothing is mounted below it (so a
// mount the lab could not remove never has its contents deleted through it).
func removeIfUnmounted(dir string) error {
	mps, err := MountsUnder(dir)
	if err != nil {
		return err
	}
	if len(mps) > 0 {
		return fmt.Errorf("not removing %s: still mounted: %s", dir, strings.Join(mps, ", "))
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// removeWorkDir removes the lab's files from the work dir, keeping the logs.
func (l *Lab) removeWorkDir() error {
	entries, err := os.ReadDir(l.workDir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("read work dir %s: %w", l.workDir, err)
	}
	ours := map[string]bool{"pki": true, "etcd": true, "apiserver": true, "controller-manager": true,
		"scheduler": true, "containerd": true, "cni": true, "images": true, "kubelet": true, "admin.kubeconfig": true,
		"kubectl-cache": true}
	var errs []error
	for _, e := range entries {
		if e.Name() == "logs" || (!l.createdWorkDir && !ours[e.Name()]) {
			continue
		}
		if err := removeIfUnmounted(filepath.Join(l.workDir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeKubeCgroups removes the (now empty) kubepods cgroups the kubelet created, deepest first,
// in every cgroup v1 hierarchy and the unified one. Busy cgroups are left alone.
func removeKubeCgroups() {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	roots = append(roots, "/sys/fs/cgroup/kubepods")
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			_ = os.Remove(d)
		}
	}
}

// Cleanup is for a lab whose process died without Stop (its daemons got SIGKILL through their
// parent-death signal, but containerd shims and mounts survive): it stops, by PID, the shims
// serving the containerd socket under workDir and unmounts everything under the kubelet root
// dir and workDir. Do not run it while another lab is using the kubelet root dir.
func Cleanup(workDir string) error {
	abs, err := filepath.Abs(workDir)
	if err != nil {
		return fmt.Errorf("cleanup: work dir %q: %w", workDir, err)
	}
	l := &Lab{workDir: abs, containerdSock: filepath.Join(abs, "containerd", "containerd.sock")}
	for _, pid := range l.shimPIDs() {
		killShim(pid, 10*time.Second)
	}
	var errs []error
	for _, dir := range []string{KubeletRootDir, abs} {
		if err := unmountAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("cleanup: unmount under %s: %w", dir, err))
		}
	}
	removeKubeCgroups()
	return errors.Join(errs...)
}

// removeLogLinks removes the kubelet's /var/log/containers symlinks that point into this lab's
// work dir (their targets, under LogDir()/pods, are kept), and the directory if the lab created it.
func (l *Lab) removeLogLinks() {
	entries, err := os.ReadDir(varLogContainers)
	if err != nil {
		return
	}
	for _, e := range entries {
		link := filepath.Join(varLogContainers, e.Name())
		target, err := os.Readlink(link)
		if err == nil && l.workDir != "" && strings.HasPrefix(target, l.workDir+"/") {
			_ = os.Remove(link)
		}
	}
	if l.createdVarLogContainers {
		_ = os.Remove(varLogContainers) // only when empty
	}
}
