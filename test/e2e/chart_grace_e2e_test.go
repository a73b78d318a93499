//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

// TestChartStdoutGrace is TestStdoutGrace through the chart: keeplog.stdoutGrace.enabled with hostDir the test's
// directory, which holds both keeplog's root and kubelet's pod logs as /var/log does on a node. Pods with no keeplog
// volume, in a namespace labelled keeplog.csi.io/stdout-grace=true (read through the chart's RBAC), print numbered
// lines and are deleted with grace 0 the moment they exit. While they run, each file of <root>/.pods is kubelet's
// own inode (link(2) worked inside the DaemonSet's one mount of hostDir: no copy); after kubelet removed its files,
// every line is still there exactly once, with the pod's pod.json, and the plugin was refused nothing.
func TestChartStdoutGrace(t *testing.T) {
	ctx := context.Background()
	const ns, nPods, nLines = "chart-grace", 3, 500
	c := setupChartLab(ctx, t, ns)
	env := c.env
	c.install(ctx, t, func(values map[string]any) {
		values["keeplog"].(map[string]any)["stdoutGrace"] = map[string]any{"enabled": true, "hostDir": env.WorkDir()}
	})
	graceNamespace(ctx, t, env, ns)
	gate := t.TempDir()
	pods := startGracePods(ctx, t, env, ns, gate, nPods, nLines)
	waitPrinted(ctx, t, env, pods, nLines)
	waitGraceLinks(ctx, t, env, pods)
	checkNoExtraBytes(t, env, pods)
	if err := os.WriteFile(filepath.Join(gate, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	deleteWhenFinished(ctx, t, env, ns, nPods)
	waitKubeletLogsGone(ctx, t, env, pods)
	checkPodJSON(t, env, pods)
	for name, p := range pods {
		data, err := os.ReadFile(graceLog(env, p))
		if err != nil {
			t.Fatalf("%s's stdout is gone with kubelet's files: %v\n%s", name, err, keeplogDiagnostics(ctx, env))
		}
		if missing, dup := countGraceLines(string(data), name, nLines); missing != 0 || dup != 0 {
			t.Errorf("%s's kept stdout: %d of %d lines missing, %d duplicated", name, missing, nLines, dup)
		}
	}
	t.Logf("%d pods x %d lines kept through the chart's stdout grace after kubelet removed its files", nPods, nLines)
	chartNoRBACDenials(ctx, t, env)
}

// graceNamespace creates ns with the stdout-grace label and waits for its default ServiceAccount.
func graceNamespace(ctx context.Context, t *testing.T, env *framework.Env, ns string) {
	t.Helper()
	if _, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{api.AnnotationStdoutGrace: "true"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := env.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("namespace %s has no default ServiceAccount: %v", ns, err)
	}
}

// waitGraceLinks waits until the plugin has linked every pod's kubelet file into <root>/.pods.
func waitGraceLinks(ctx context.Context, t *testing.T, env *framework.Env, pods map[string]*corev1.Pod) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		for _, p := range pods {
			if _, err := os.Stat(graceLog(env, p)); err != nil {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the chart's plugin did not link the pods' stdout into the root: %v\n%s", err, keeplogDiagnostics(ctx, env))
	}
}

// countGraceLines counts pod name's lines 1..lines in a CRI log file ("<time> stdout F grace NAME i").
func countGraceLines(data, name string, lines int) (missing, dup int) {
	seen := map[string]int{}
	for _, l := range strings.Split(data, "\n") {
		if f := strings.SplitN(l, " ", 4); len(f) == 4 {
			seen[f[3]]++
		}
	}
	for i := 1; i <= lines; i++ {
		switch n := seen[fmt.Sprintf("grace %s %d", name, i)]; {
		case n == 0:
			missing++
		case n > 1:
			dup += n - 1
		}
	}
	return missing, dup
}
