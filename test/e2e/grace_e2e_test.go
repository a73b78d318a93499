//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

// graceScript prints its first numbered line, pauses (collectors poll the short file, as they do most pods' files:
// a line, a pause), prints the others at once, then waits for the test's gate file (so the test can look at the disk
// while every pod runs) and exits.
const graceScript = `echo "grace NAME 1"; sleep 1
i=2; while [ $i -le LINES ]; do echo "grace NAME $i"; i=$((i+1)); done
while [ ! -f /gate/go ]; do sleep 0.2; done`

// graceSize is the number of pods and lines per pod: KEEPLOG_GRACE_PODS x KEEPLOG_GRACE_LINES, 10 x 2,000 by default
// (make test); make e2e-grace-full runs 50 x 10,000.
func graceSize(t *testing.T) (pods, lines int) {
	pods, lines = 10, 2000
	for env, v := range map[string]*int{"KEEPLOG_GRACE_PODS": &pods, "KEEPLOG_GRACE_LINES": &lines} {
		if s := os.Getenv(env); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				t.Fatalf("%s=%q is not a positive number", env, s)
			}
			*v = n
		}
	}
	return pods, lines
}

// TestStdoutGrace: with --stdout-grace, pods without any keeplog volume in a namespace labelled
// keeplog.csi.io/stdout-grace=true print numbered lines and are deleted (grace 0) the moment they exit. While they
// run, <root>/.pods holds kubelet's own inodes (2 links each) and adds no byte of file data to the disk. The same
// shipped OpenTelemetry snippet reads every line exactly once with the pod's attributes, also in a collector started
// only after kubelet deleted its files; the same collector with /var/log/pods alone is measured beside it.
func TestStdoutGrace(t *testing.T) {
	ctx := context.Background()
	nPods, nLines := graceSize(t)
	env := framework.SetupTest(t)
	if err := env.KillKeeplog(); err != nil {
		t.Fatal(err)
	}
	if err := env.StartKeeplog(ctx, "--stdout-grace"); err != nil {
		t.Fatal(err)
	}
	snippet := filepath.Join(env.Repo, "charts/keeplog/files/collectors/otelcol-filelog.yaml")
	podsOnly := podLogsOnlySnippet(t, snippet)
	stdout := []string{"filelog/keeplog-stdout"}
	running := map[string]*framework.Collector{}
	for name, s := range map[string]string{"pods-only": podsOnly, "with-keeplog": snippet} {
		c, err := env.StartCollector("otelcol-running-"+name, s, stdout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Stop()
		running[name] = c
	}
	ns := "grace"
	if _, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{api.AnnotationStdoutGrace: "true"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gate := t.TempDir()
	pods := startGracePods(ctx, t, env, ns, gate, nPods, nLines)
	waitPrinted(ctx, t, env, pods, nLines)
	checkNoExtraBytes(t, env, pods)
	if err := os.WriteFile(filepath.Join(gate, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deleteWhenFinished(ctx, t, env, ns, nPods)
	t.Logf("%d pods exited and were deleted with grace 0 in %s", nPods, time.Since(start).Round(time.Millisecond))
	lost := map[string]int{}
	// The collector with keeplog's path first, until it has every line; the one with /var/log/pods alone has had
	// the same time then, and is read once nothing new arrived for a few seconds.
	lost["running, with-keeplog"] = graceCollected(ctx, t, running["with-keeplog"], pods, nLines, true)
	lost["running, pods-only"] = graceCollected(ctx, t, running["pods-only"], pods, nLines, false)
	waitKubeletLogsGone(ctx, t, env, pods)
	checkPodJSON(t, env, pods)
	late := map[string]*framework.Collector{}
	for name, s := range map[string]string{"pods-only": podsOnly, "with-keeplog": snippet} {
		c, err := env.StartCollector("otelcol-late-"+name, s, stdout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Stop()
		late[name] = c
	}
	lost["started after kubelet deleted its files, with-keeplog"] = graceCollected(ctx, t, late["with-keeplog"], pods, nLines, true)
	lost["started after kubelet deleted its files, pods-only"] = graceCollected(ctx, t, late["pods-only"], pods, nLines, false)
	total := nPods * nLines
	for what, n := range lost {
		t.Logf("lines lost by a collector %s: %d of %d", what, n, total)
	}
	for _, what := range []string{"running, with-keeplog", "started after kubelet deleted its files, with-keeplog"} {
		if lost[what] != 0 {
			t.Errorf("collector %s lost %d of %d lines", what, lost[what], total)
		}
	}
	if lost["started after kubelet deleted its files, pods-only"] != total {
		t.Errorf("with /var/log/pods alone a late collector got %d lines of deleted pods: the comparison measures nothing",
			total-lost["started after kubelet deleted its files, pods-only"])
	}
}

// podLogsOnlySnippet is the shipped snippet without keeplog's include path: what a collector reads today.
func podLogsOnlySnippet(t *testing.T, snippet string) string {
	t.Helper()
	data, err := os.ReadFile(snippet)
	if err != nil {
		t.Fatal(err)
	}
	line := "      - " + framework.SnippetRoot + "/" + api.CollectStdoutGlob + "\n"
	if !strings.Contains(string(data), line) {
		t.Fatalf("%s has no line %q", snippet, line)
	}
	out := filepath.Join(t.TempDir(), "pods-only.yaml")
	if err := os.WriteFile(out, []byte(strings.Replace(string(data), line, "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

func startGracePods(ctx context.Context, t *testing.T, env *framework.Env, ns, gate string, n, lines int) map[string]*corev1.Pod {
	t.Helper()
	pods := map[string]*corev1.Pod{}
	grace, dir := int64(1), corev1.HostPathDirectory
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("printer-%d", i)
		script := strings.NewReplacer("LINES", strconv.Itoa(lines), "NAME", name).Replace(graceScript)
		spec := corev1.PodSpec{HostNetwork: true, TerminationGracePeriodSeconds: &grace, RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "app", Image: env.Lab.BusyboxImage(), ImagePullPolicy: corev1.PullNever,
				Command:      []string{"sh", "-c", script},
				VolumeMounts: []corev1.VolumeMount{{Name: "gate", MountPath: "/gate", ReadOnly: true}}}},
			Volumes: []corev1.Volume{{Name: "gate", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: gate, Type: &dir}}}}}
		p, err := env.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pods[name] = p
	}
	return pods
}

func kubeletLog(env *framework.Env, p *corev1.Pod) string {
	return filepath.Join(env.PodLogsDir(), store.PodRef{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID)}.DirName(), "app", "0.log")
}

func graceLog(env *framework.Env, p *corev1.Pod) string {
	return filepath.Join(env.Root, api.PodLogsDir, store.PodRef{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID)}.DirName(), "app", "0.log")
}

// waitPrinted waits until every pod's kubelet file holds its last line (the pods then wait for the gate).
func waitPrinted(ctx context.Context, t *testing.T, env *framework.Env, pods map[string]*corev1.Pod, lines int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 5*time.Minute, true, func(context.Context) (bool, error) {
		for name, p := range pods {
			data, err := os.ReadFile(kubeletLog(env, p))
			if err != nil || !strings.Contains(string(data), fmt.Sprintf("grace %s %d\n", name, lines)) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("pods did not print all their lines: %v", err)
	}
}

// checkNoExtraBytes: while the pods run, each file of the grace tree is kubelet's inode (2 links), and du counts the
// tree beside /var/log/pods as its directories only: not one byte of file data.
func checkNoExtraBytes(t *testing.T, env *framework.Env, pods map[string]*corev1.Pod) {
	t.Helper()
	for _, p := range pods {
		var k, g syscall.Stat_t
		if err := syscall.Stat(kubeletLog(env, p), &k); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Stat(graceLog(env, p), &g); err != nil {
			t.Fatalf("no grace link for %s: %v", p.Name, err)
		}
		if k.Ino != g.Ino || k.Nlink != 2 {
			t.Errorf("%s: kubelet's inode %d (%d links), grace tree's %d", p.Name, k.Ino, k.Nlink, g.Ino)
		}
	}
	tree := filepath.Join(env.Root, api.PodLogsDir)
	out, err := exec.Command("du", "-s", "-B1", env.PodLogsDir(), tree).CombinedOutput()
	if err != nil {
		t.Fatalf("du: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	podLogs, _ := strconv.ParseInt(strings.Fields(lines[0])[0], 10, 64)
	extra, _ := strconv.ParseInt(strings.Fields(lines[1])[0], 10, 64)
	var dirs, metadata int64
	err = filepath.Walk(tree, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		switch {
		case fi.IsDir():
			dirs += st.Blocks * 512
		case st.Nlink == 1: // keeplog's own pod.json
			metadata += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("while the pods run: du of /var/log/pods %d bytes; the grace tree adds %d bytes: %d of directories, %d of pod.json, %d of log data",
		podLogs, extra, dirs, metadata, extra-dirs-metadata)
	if extra-dirs-metadata != 0 {
		t.Errorf("the grace tree adds %d bytes of log data while the pods run, want 0", extra-dirs-metadata)
	}
}

// checkPodJSON: each deleted pod's pod.json is beside its logs, with its uid and namespace.
func checkPodJSON(t *testing.T, env *framework.Env, pods map[string]*corev1.Pod) {
	t.Helper()
	for _, p := range pods {
		data, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(graceLog(env, p))), api.PodLogsPodFile))
		if err != nil || !strings.Contains(string(data), `"uid":"`+string(p.UID)+`"`) {
			t.Errorf("pod.json of %s: %v %.200s", p.Name, err, data)
		}
	}
}

// graceCollected waits for the collector's records (all of them when complete, else until nothing new came for a
// few seconds), stops it and returns how many of the pods' lines it lost; it fails on duplicates, wrong attributes
// and records that are no printed line.
func graceCollected(ctx context.Context, t *testing.T, c *framework.Collector, pods map[string]*corev1.Pod, lines int, complete bool) int {
	t.Helper()
	want := len(pods) * lines
	if !complete {
		want = 0
	}
	recs, _ := c.WaitRecords(ctx, want, 5*time.Second, 3*time.Minute)
	if err := c.Stop(); err != nil {
		t.Error(err)
	}
	if final, err := c.Records(); err == nil {
		recs = final
	}
	seen := map[string]int{}
	bad := 0
	for _, r := range recs {
		f := strings.Fields(r.Body)
		p := pods[func() string {
			if len(f) == 3 && f[0] == "grace" {
				return f[1]
			}
			return ""
		}()]
		if p == nil || r.Resource["k8s.pod.name"] != p.Name || r.Resource["k8s.namespace.name"] != p.Namespace ||
			r.Resource["k8s.pod.uid"] != string(p.UID) || r.Resource["k8s.container.name"] != "app" {
			bad++
			continue
		}
		seen[r.Body]++
	}
	missing, dup := 0, 0
	for name := range pods {
		for i := 1; i <= lines; i++ {
			switch n := seen[fmt.Sprintf("grace %s %d", name, i)]; {
			case n == 0:
				missing++
			case n > 1:
				dup += n - 1
			}
		}
	}
	if dup > 0 || bad > 0 {
		t.Errorf("%d duplicate lines, %d records with wrong attributes or no printed line", dup, bad)
	}
	return missing
}
