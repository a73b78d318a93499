//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/internal/s3test"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/archiver"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

// TestChartS3 is issue 15 on the real lab: the chart installed with an archive target Secret of `type: s3` in the
// release's namespace, for a real SeaweedFS S3 server on the host's 127.0.0.1 (the plugin runs in the node's network,
// the chart's default). The Secret first holds a wrong secretAccessKey: a pod writes a dump into its keeplog volume
// and is deleted, and keeplog sends an ArchiveRetrying Event on the pod that says "wrong credentials", logs the same
// and writes it in the pod's status file, quotes neither key and keeps the dump. Then the Secret is fixed through the
// API and nothing else is done: kubelet updates the mounted files, the same plugin pod reads them before its next
// connection (docs/archiving.md) and logs that it did, and the deleted pod's dump is archived once. The bucket holds it
// and its manifest under <prefix>/<namespace>/<pod>/<uid>/<container>/<path>, Debian's rclone's copy hashes to the
// manifest's digest and to the node's file, the manifest names the pod, /metrics counts one successful upload and
// quotes no key, and no multipart upload is left.
func TestChartS3(t *testing.T) {
	ctx := context.Background()
	s3 := s3test.Start(t) // its cleanup runs after the lab's: the plugin never loses the server before it is gone
	const ns = "chart-s3"
	c := setupChartLab(ctx, t, ns)
	env := c.env
	mustNamespace(ctx, t, env, ns)
	bad := "wrong" + s3.SecretKey[5:]
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "keeplog-s3", Namespace: chartNamespace},
		StringData: map[string]string{"type": "s3", "endpoint": s3.Endpoint, "bucket": s3.Bucket, "prefix": "e2e",
			"pathStyle": "true", "accessKeyID": s3.AccessKey, "secretAccessKey": bad}}
	if _, err := env.Client.CoreV1().Secrets(chartNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A quiet period far longer than the test: the dump is found finished only because its pod was deleted.
	first, port := c.install(ctx, t, func(values map[string]any) {
		values["archive"] = map[string]any{"secretName": secret.Name, "quietPeriod": "10m"}
	})
	chartMetricsPort = port // scrape's
	pod := dumpPod(ctx, t, env, ns, "java", framework.StorageClass, nil, map[string]int{"java_pid1.hprof": 12 * 1024})
	local := filepath.Join(env.PodDir(pod), "app", "java_pid1.hprof")
	want := sha(t, local)
	if err := env.DeletePodAndWait(ctx, ns, pod.Name); err != nil {
		t.Fatal(err)
	}

	msg := waitEvent(ctx, t, env, pod, api.ReasonArchiveRetrying)
	t.Logf("with a wrong secretAccessKey: %s: %s", api.ReasonArchiveRetrying, msg)
	if !strings.Contains(msg, "wrong credentials") || strings.Contains(msg, bad) || strings.Contains(msg, s3.SecretKey) {
		t.Errorf("the %s Event %q does not say wrong credentials, or quotes a key", api.ReasonArchiveRetrying, msg)
	}
	log := env.ContainerLog(first, "keeplog", 1_000_000)
	if !strings.Contains(log, "wrong credentials") || strings.Contains(log, bad) || strings.Contains(log, s3.SecretKey) {
		t.Errorf("keeplog's log does not say wrong credentials, or quotes a key:\n%s", env.ContainerLog(first, "keeplog", 20))
	}
	status := filepath.Join(env.PodDir(pod), api.ArchiveStatusPath)
	if err := framework.WaitFileContains(ctx, status, "wrong credentials"); err != nil {
		t.Errorf("the pod's status file: %v", err)
	}
	if got := sha(t, local); got != want {
		t.Errorf("the dump changed on the node while its upload failed: %s, want %s", got, want)
	}
	if objs, err := s3.Objects(ctx); err != nil || len(objs) != 0 {
		t.Errorf("objects %v (%v) after a refused upload", objs, err)
	}

	secret.StringData["secretAccessKey"] = s3.SecretKey
	if _, err := env.Client.CoreV1().Secrets(chartNamespace).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	key := strings.Join([]string{"e2e", ns, pod.Name, string(pod.UID), "app", "java_pid1.hprof"}, "/")
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		objs, err := s3.Objects(ctx)
		return len(objs) >= 2, err
	})
	objs, lerr := s3.Objects(ctx)
	if err != nil {
		t.Fatalf("the dump was not archived after the fix: %v; objects %v (%v)\n%s", err, objs, lerr, keeplogDiagnostics(ctx, env))
	}
	if lerr != nil || len(objs) != 2 || objs[0] != key || objs[1] != key+".manifest.json" {
		t.Fatalf("objects %v (%v), want %s and its manifest", objs, lerr, key)
	}
	var m archiver.Manifest
	mb, err := s3.Rclone(ctx, "cat", s3.Remote(key+".manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	got, err := s3.RcloneSHA256(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if got != want || m.SHA256 != want || m.StoredSHA256 != want {
		t.Fatalf("rclone's copy sha256 %s, manifest %s (stored %s), the node's file %s", got, m.SHA256, m.StoredSHA256, want)
	}
	if m.Namespace != ns || m.Pod != pod.Name || m.UID != string(pod.UID) || m.Node != env.Lab.NodeName() || m.Container != "app" {
		t.Errorf("manifest %+v does not describe the dump of pod %s/%s (uid %s) on %s", m, ns, pod.Name, pod.UID, env.Lab.NodeName())
	}
	waitEvent(ctx, t, env, pod, api.ReasonArchived)
	if ups, err := s3.Uploads(ctx); err != nil || len(ups) != 0 {
		t.Errorf("multipart uploads left: %v (%v)", ups, err)
	}
	metrics, err := scrape(ctx, t, env)
	if err != nil {
		t.Fatal(err)
	}
	if n := metricSum(metrics, "keeplog_archiver_uploads_total", `result="success"`); n != 1 {
		t.Errorf("the plugin counts %v successful uploads, want 1", n)
	}
	if now, err := env.WaitDaemonSetPod(ctx, chartNamespace, chartSelector, 5*time.Second); err != nil || now.UID != first.UID {
		t.Errorf("the plugin's pod was replaced (%v): the fixed Secret must apply without a restart", err)
	}
	if log := env.ContainerLog(first, "keeplog", 1_000_000); !strings.Contains(log, "The archive target Secret changed; the next connection uses it") {
		t.Errorf("keeplog did not log that it took the fixed Secret:\n%s", env.ContainerLog(first, "keeplog", 20))
	}
	if strings.Contains(metrics, s3.SecretKey) || strings.Contains(metrics, bad) {
		t.Error("/metrics quotes a secretAccessKey")
	}
	t.Logf("after the fix, without a restart: %s (%d bytes, sha256 %s) archived and read back with rclone", key, m.Size, want)
	chartNoRBACDenials(ctx, t, env)
}
