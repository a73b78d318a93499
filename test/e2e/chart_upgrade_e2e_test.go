//go:build e2e

package e2e

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

const upgradeNamespace = "upgrade"

// TestChartUpgradeRollback installs the previous release (chart and image built from framework.PreviousRelease in a
// temporary git worktree), leaves a deleted pod's retained directory, a dump already archived and a 24 MiB dump
// uploading at 1 MiB/s, upgrades to this checkout's chart and image in the middle of that upload, and checks that
// the new plugin reads every record the old one wrote (the running pod unpublishes, the retained directory is
// counted, the archived dump's journal entry is honoured: not uploaded again), finishes the interrupted upload
// exactly once, and loses nothing; then `helm rollback` to the previous release, whose binary reads the records the
// new one wrote (they carry "format": 1, which it ignores), uploads nothing again and loses nothing.
//
// It builds the previous release (a minute or two), so it runs only with KEEPLOG_E2E_UPGRADE=1: make e2e-upgrade.
func TestChartUpgradeRollback(t *testing.T) {
	if os.Getenv("KEEPLOG_E2E_UPGRADE") == "" {
		t.Skip("builds the previous release: run with make e2e-upgrade (KEEPLOG_E2E_UPGRADE=1)")
	}
	ctx := context.Background()
	var prev *framework.Release
	t.Cleanup(func() { // registered first, so it runs last: after the lab is torn down
		if err := prev.Remove(context.Background()); err != nil {
			t.Error(err)
		}
	})
	c := setupChartLab(ctx, t, upgradeNamespace)
	env := c.env
	var err error
	prev, err = framework.BuildPreviousRelease(ctx, env.Repo, framework.PreviousRelease, env.WorkDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	sftp := framework.StartSFTP(t)
	mustNamespace(ctx, t, env, upgradeNamespace)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "keeplog-sftp", Namespace: chartNamespace}, Data: map[string][]byte{}}
	for _, k := range []string{"host", "port", "user", "privateKey", "knownHosts", "baseDir"} {
		b, err := os.ReadFile(filepath.Join(sftp.TargetDir, k))
		if err != nil {
			t.Fatal(err)
		}
		secret.Data[k] = b
	}
	if _, err := env.Client.CoreV1().Secrets(chartNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := env.ImportChartImages(ctx); err != nil {
		t.Fatal(err)
	}
	if err := env.ImportImage(ctx, prev.Image); err != nil {
		t.Fatal(err)
	}
	current, oldValues := upgradeValues(t, env)
	currentRef := current["image"].(map[string]any)

	// The previous release, with its records, an archived dump, a retained directory and an upload in flight.
	if _, err := env.Helm(ctx, "install", chartRelease, prev.Chart, "--namespace", chartNamespace, "--values", writeValues(t, env, "previous.yaml", oldValues)); err != nil {
		t.Fatal(err)
	}
	c.installed = true
	waitPluginImage(ctx, t, env, framework.PreviousImageRef)
	gone := chartRunPod(ctx, t, env, upgradeNamespace, "gone", corev1.Volume{Name: "logs",
		VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: claimTemplate()}}})
	goneDir := env.PodDir(gone)
	if err := framework.WaitFileContains(ctx, filepath.Join(goneDir, "app.log"), "hello from"); err != nil {
		t.Fatal(err)
	}
	if err := env.DeletePodAndWait(ctx, upgradeNamespace, gone.Name); err != nil {
		t.Fatal(err)
	}
	done := dumpPod(ctx, t, env, upgradeNamespace, "done", framework.StorageClass, nil, map[string]int{"small.hprof": 256})
	doneRemote := sftp.Archived(t, podRef(done), "app/small.hprof")
	if err := waitExists(ctx, doneRemote+".manifest.json"); err != nil {
		t.Fatalf("the previous release did not archive small.hprof: %v\nserver: %v\n%s", err, sftp.Files(), keeplogDiagnostics(ctx, env))
	}
	big := dumpPod(ctx, t, env, upgradeNamespace, "big", framework.StorageClass, nil, map[string]int{"big.hprof": 24 * 1024})
	bigRemote := sftp.Archived(t, podRef(big), "app/big.hprof")
	waitUploading(ctx, t, sftp, "big.hprof", bigRemote)
	t.Logf("upgrading while big.hprof uploads; server: %v", sftp.Files())

	// Upgrade in the middle of the upload.
	if _, err := env.Helm(ctx, "upgrade", chartRelease, filepath.Join(env.Repo, "charts", "keeplog"), "--namespace", chartNamespace,
		"--values", writeValues(t, env, "current.yaml", current)); err != nil {
		t.Fatal(err)
	}
	waitPluginImage(ctx, t, env, currentRef["repository"].(string)+":"+currentRef["tag"].(string))
	if _, err := os.Stat(bigRemote); err == nil {
		t.Log("note: big.hprof was complete before the upgrade took the old plugin down")
	}
	if err := waitExistsFor(ctx, bigRemote+".manifest.json", 3*time.Minute); err != nil {
		t.Fatalf("the interrupted upload was not finished after the upgrade: %v\nserver: %v\n%s", err, sftp.Files(), keeplogDiagnostics(ctx, env))
	}
	if got, want := sha(t, bigRemote), sha(t, filepath.Join(env.PodDir(big), "app", "big.hprof")); got != want {
		t.Errorf("big.hprof on the server %s, on the node %s", got, want)
	}
	metrics, err := scrape(ctx, t, env)
	if err != nil {
		t.Fatal(err)
	}
	if n := metricSum(metrics, "keeplog_archiver_uploads_total", `result="success"`); n != 1 {
		t.Errorf("the upgraded plugin uploaded %v files, want 1 (big.hprof; small.hprof's journal entry says done)", n)
	}
	t.Logf("after the upgrade: big.hprof finished by the new plugin (%v successful upload, %v bytes sent), small.hprof not sent again",
		metricSum(metrics, "keeplog_archiver_uploads_total", `result="success"`), metricSum(metrics, "keeplog_archiver_uploaded_bytes_total", ""))
	// The running pod's target and pod-directory records, written by the previous release, are read at unpublish.
	if err := env.DeletePodAndWait(ctx, upgradeNamespace, done.Name); err != nil {
		t.Fatal(err)
	}
	assertNotMounted(t, env, done)
	assertNothingLost(ctx, t, env, sftp, []string{goneDir, env.PodDir(done), env.PodDir(big)}, []string{doneRemote, bigRemote})
	waitRetained(ctx, t, func() (string, error) { return scrape(ctx, t, env) }, 2)

	// Roll back: the previous binary over the records the current one wrote.
	before := strings.Join(sftp.Files(), "\n")
	if _, err := env.Helm(ctx, "rollback", chartRelease, "1", "--namespace", chartNamespace, "--wait", "--timeout", "3m"); err != nil {
		t.Fatal(err)
	}
	waitPluginImage(ctx, t, env, framework.PreviousImageRef)
	if err := env.DeletePodAndWait(ctx, upgradeNamespace, big.Name); err != nil {
		t.Fatal(err)
	}
	assertNotMounted(t, env, big)
	open := func() (string, error) { _, b := get(ctx, t, chartNodeURL(ctx, t, env)+"/metrics", ""); return b, nil }
	waitRetained(ctx, t, open, 3)
	time.Sleep(12 * time.Second) // past the previous release's archive rescan (10s): a re-upload would have begun
	old, _ := open()
	if n := metricSum(old, "keeplog_archiver_uploads_total", `result="success"`); n != 0 {
		t.Errorf("after the rollback the previous release uploaded %v files again", n)
	}
	t.Logf("after the rollback: %v uploads by the previous release, %v retained directories counted, server: %v",
		metricSum(old, "keeplog_archiver_uploads_total", `result="success"`), metricSum(old, "keeplog_gc_retained_directories", ""), sftp.Files())
	if after := strings.Join(sftp.Files(), "\n"); after != before {
		t.Errorf("the server's files changed after the rollback:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	assertNothingLost(ctx, t, env, sftp, []string{goneDir, env.PodDir(done), env.PodDir(big)}, []string{doneRemote, bigRemote})
}

// upgradeValues are the lab's chart values with archiving to the test's SFTP server (1 MiB/s, a short quiet period
// and rescan) and a fast GC pass, for the current chart and for the previous one (its image, and without the values
// its schema does not have).
func upgradeValues(t *testing.T, env *framework.Env) (current, previous map[string]any) {
	t.Helper()
	current, port, err := env.ChartValuesMap()
	if err != nil {
		t.Fatal(err)
	}
	chartMetricsPort = port
	current["archive"] = map[string]any{"secretName": "keeplog-sftp", "quietPeriod": "2s", "bandwidth": "1Mi", "rescanInterval": "10s"}
	current["gc"] = map[string]any{"interval": "5s"}
	delete(current, "tests")
	previous = maps.Clone(current)
	previous["image"] = map[string]any{"repository": strings.Split(framework.PreviousImageRef, ":")[0], "tag": "previous", "pullPolicy": "Never"}
	previous["metrics"] = map[string]any{"port": port}
	return current, previous
}

func writeValues(t *testing.T, env *framework.Env, name string, v map[string]any) string {
	t.Helper()
	p, err := env.WriteValues(name, v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitPluginImage waits until the DaemonSet's one pod runs the image and is ready.
func waitPluginImage(ctx context.Context, t *testing.T, env *framework.Env, image string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		pod, err := env.WaitDaemonSetPod(ctx, chartNamespace, chartSelector, 5*time.Second)
		return err == nil && pod.DeletionTimestamp == nil && pod.Spec.Containers[0].Image == image, nil
	})
	if err != nil {
		t.Fatalf("the plugin does not run %s: %v\n%s", image, err, keeplogDiagnostics(ctx, env))
	}
}

// waitUploading waits until the server has a temporary file of name (the upload began) and not the final one.
func waitUploading(ctx context.Context, t *testing.T, sftp *framework.SFTP, name, final string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		for _, f := range sftp.Files() {
			if strings.Contains(f, name) && !strings.HasSuffix(final, f) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no upload of %s in flight: %v (server: %v)", name, err, sftp.Files())
	}
	if _, err := os.Stat(final); err == nil {
		t.Fatalf("%s was complete before the upgrade: the test needs it in flight", name)
	}
}

// assertNothingLost: every pod directory is still there with its files, every archived file has its manifest and
// the server has each once (no second copy under another name).
func assertNothingLost(ctx context.Context, t *testing.T, env *framework.Env, sftp *framework.SFTP, dirs, remotes []string) {
	t.Helper()
	for _, d := range dirs {
		if entries, err := os.ReadDir(d); err != nil || len(entries) == 0 {
			t.Errorf("pod directory %s: %v, %d entries", d, err, len(entries))
		}
	}
	files := strings.Join(sftp.Files(), "\n")
	for _, r := range remotes {
		if _, err := os.Stat(r + ".manifest.json"); err != nil {
			t.Errorf("%s: %v", r, err)
		}
		base := filepath.Base(r)
		if n := strings.Count(files, strings.TrimSuffix(base, ".hprof")+"."); n != 2 { // the file and its manifest
			t.Errorf("%s appears %d times on the server:\n%s", base, n, files)
		}
	}
	for _, d := range dirs[1:] {
		if err := framework.WaitFileContains(ctx, filepath.Join(d, api.ArchiveStatusPath), `"state": "done"`); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
}

// waitRetained waits until the plugin's garbage collector counts at least n retained directories (it read their
// records).
func waitRetained(ctx context.Context, t *testing.T, metrics func() (string, error), n float64) {
	t.Helper()
	var got float64
	err := wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(context.Context) (bool, error) {
		body, err := metrics()
		got = metricSum(body, "keeplog_gc_retained_directories", "")
		return err == nil && got >= n, nil
	})
	if err != nil {
		t.Errorf("keeplog_gc_retained_directories %v, want %v: %v", got, n, err)
	}
}

// metricSum adds up the samples of a metric whose labels contain match.
func metricSum(body, name, match string) float64 {
	re := regexp.MustCompile(`(?m)^` + name + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	sum := 0.0
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		if strings.Contains(m[1], match) {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum += v
		}
	}
	return sum
}

func waitExistsFor(ctx context.Context, path string, d time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, d, true, func(context.Context) (bool, error) {
		_, err := os.Stat(path)
		return err == nil, nil
	})
}
