//go:build e2e

package lab_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keeplog/keeplog/test/e2e/lab"
)

// TestLab starts the lab, runs a hostNetwork busybox pod that echoes a line, checks the pod
// succeeds and `kubectl logs` shows the line, then stops the lab and checks that no process it
// started is alive and nothing is left mounted under the kubelet root dir.
func TestLab(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	start := time.Now()
	l, err := lab.Start(ctx, lab.Config{Logf: t.Logf})
	if err != nil {
		t.Fatalf("start lab: %v", err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			if err := l.Stop(); err != nil {
				t.Errorf("stop lab: %v", err)
			}
		}
	})
	t.Logf("lab started in %s; node %s; kubeconfig %s", time.Since(start).Round(time.Millisecond), l.NodeName(), l.Kubeconfig())

	if out, err := l.Kubectl(ctx, "version", "-o", "yaml"); err != nil || !strings.Contains(out, lab.KubernetesVersion) {
		t.Errorf("kubectl version: %v: %s", err, out)
	}

	const line = "keeplog-lab-says-hello"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
		Spec: corev1.PodSpec{
			HostNetwork:   true,
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name:            "echo",
				Image:           l.BusyboxImage(),
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"sh", "-c", "echo " + line + "; id; ls /var/run/secrets/kubernetes.io/serviceaccount"},
			}},
		},
	}
	podStart := time.Now()
	if _, err := l.Client().CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	if err := waitPodPhase(ctx, l, "default", "echo", corev1.PodSucceeded, 2*time.Minute); err != nil {
		out, _ := l.Kubectl(ctx, "describe", "pod", "-n", "default", "echo")
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("pod succeeded %s after creation", time.Since(podStart).Round(time.Millisecond))
	logs, err := l.Kubectl(ctx, "logs", "-n", "default", "echo")
	if err != nil {
		t.Fatalf("kubectl logs: %v", err)
	}
	if !strings.Contains(logs, line+"\n") {
		t.Fatalf("kubectl logs does not show %q:\n%s", line, logs)
	}
	t.Logf("kubectl logs:\n%s", logs)

	// A long-running pod: Stop must delete it gracefully before stopping the kubelet.
	sleeper := pod.DeepCopy()
	sleeper.Name = "sleeper"
	sleeper.Spec.Containers[0].Command = []string{"sleep", "3600"}
	if _, err := l.Client().CoreV1().Pods("default").Create(ctx, sleeper, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	if err := waitPodPhase(ctx, l, "default", "sleeper", corev1.PodRunning, 2*time.Minute); err != nil {
		t.Fatal(err)
	}

	procs := l.Processes()
	workDir := l.WorkDir()
	stopStart := time.Now()
	err = l.Stop()
	stopped = true
	if err != nil {
		t.Errorf("stop lab: %v", err)
	}
	t.Logf("lab stopped in %s", time.Since(stopStart).Round(time.Millisecond))
	if err2 := l.Stop(); err2 != err {
		t.Errorf("second Stop returned %v, first %v", err2, err)
	}

	for _, p := range procs {
		if !p.Exited() {
			t.Errorf("process %s (pid %d) still running after Stop", p.Name(), p.Pid())
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.Pid())); err == nil {
			if stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid())); len(stat) > 0 {
				t.Errorf("pid %d of %s exists after Stop: %q", p.Pid(), p.Name(), stat)
			}
		}
	}
	if pids := lab.ProcessesReferencing(workDir); len(pids) > 0 {
		for _, pid := range pids {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			t.Errorf("process %d still references the lab work dir: %q", pid, cmdline)
		}
	}
	for _, dir := range []string{lab.KubeletRootDir, workDir} {
		mps, err := lab.MountsUnder(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(mps) > 0 {
			t.Errorf("still mounted under %s after Stop: %v", dir, mps)
		}
	}
	if _, err := os.Stat(l.LogDir()); err != nil {
		t.Errorf("logs not kept: %v", err)
	}
}

func waitPodPhase(ctx context.Context, l *lab.Lab, ns, name string, want corev1.PodPhase, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last corev1.PodPhase
	for time.Now().Before(deadline) {
		p, err := l.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = p.Status.Phase
			if last == want {
				return nil
			}
			if last == corev1.PodFailed || (last == corev1.PodSucceeded && want != last) {
				return fmt.Errorf("pod %s/%s reached phase %s, want %s: %+v", ns, name, last, want, p.Status)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("pod %s/%s: phase %q after %s, want %s", ns, name, last, timeout, want)
}
