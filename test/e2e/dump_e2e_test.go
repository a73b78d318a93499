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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/dump"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

// TestDump runs heap dumps in the node plugin on a real single-node Kubernetes: busybox pods with a memory limit
// serve a dump endpoint (httpd + CGI writing a .hprof into their keeplog volume) and hog memory on request. The
// dumps are uploaded by the archiver to a real OpenSSH server.
func TestDump(t *testing.T) {
	ctx := context.Background()
	env := framework.SetupTest(t)
	sftp := framework.StartSFTP(t)
	httpPort, err := framework.FreeLocalPort()
	if err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(t.TempDir(), "webhook-token")
	if err := os.WriteFile(token, []byte("e2e-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := env.KillKeeplog(); err != nil {
		t.Fatal(err)
	}
	if err := env.StartKeeplog(ctx, sftp.Flag(), "--archive-quiet-period=3s", "--namespace=kube-system",
		"--http-address=127.0.0.1:"+strconv.Itoa(httpPort), "--dump-poll-interval=1s", "--dump-cooldown=5s",
		"--dump-quiet-period=2s", "--dump-cluster-max=1", "--dump-webhook", "--dump-webhook-token-file="+token); err != nil {
		t.Fatal(err)
	}
	h := &heapEnv{env: env, sftp: sftp, webhook: fmt.Sprintf("http://127.0.0.1:%d%s", httpPort, dump.WebhookPath)}
	t.Run("ThresholdFirstOnlyRearm", func(t *testing.T) { h.thresholdFirstOnlyRearm(ctx, t) })
	t.Run("ClusterSlotSerializesDumps", func(t *testing.T) { h.clusterSlot(ctx, t) })
	t.Run("ManualAnnotation", func(t *testing.T) { h.manual(ctx, t) })
	t.Run("AlertmanagerWebhook", func(t *testing.T) { h.alertmanager(ctx, t) })
	t.Run("ExecRequested", func(t *testing.T) { h.exec(ctx, t) })
}

type heapEnv struct {
	env     *framework.Env
	sftp    *framework.SFTP
	webhook string
}

func (h *heapEnv) app(ctx context.Context, t *testing.T, ns, name string, guaranteed bool, ann map[string]string) *framework.HeapApp {
	t.Helper()
	a, err := h.env.HeapAppPod(ctx, ns, name, 64, guaranteed, ann)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// waitDumps waits until the app has written n dumps (each ended) and returns its log.
func (h *heapEnv) waitDumps(ctx context.Context, t *testing.T, a *framework.HeapApp, n int, timeout time.Duration) framework.HeapAppLog {
	t.Helper()
	var log framework.HeapAppLog
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		log, lastErr = h.env.ReadHeapAppLog(a)
		if lastErr != nil || len(log.Dumps) < n {
			return false, nil
		}
		for _, d := range log.Dumps {
			if d.End == 0 {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%s: want %d finished dumps within %s, log %+v (%v)\nevents:\n%s\nkeeplog:\n%s", a.Pod.Name, n, timeout, log, lastErr,
			h.events(ctx, a.Pod), h.env.KeeplogLog(40))
	}
	return log
}

// stillDumps checks for d that the app writes no more than n dumps.
func (h *heapEnv) stillDumps(t *testing.T, a *framework.HeapApp, n int, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	log, err := h.env.ReadHeapAppLog(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(log.Dumps) != n {
		t.Fatalf("%s: %d dumps, want exactly %d: %+v\nevents:\n%s", a.Pod.Name, len(log.Dumps), n, log.Dumps, h.events(context.Background(), a.Pod))
	}
}

// archived waits for the app's dump file on the SFTP server and compares it with the local one.
func (h *heapEnv) archived(ctx context.Context, t *testing.T, a *framework.HeapApp, file string) {
	t.Helper()
	rel := "app/" + filepath.Base(file)
	remote := h.sftp.Archived(t, podRef(a.Pod), rel)
	if err := waitExists(ctx, remote); err != nil {
		t.Fatalf("%s not archived: %v\nserver: %v\nkeeplog:\n%s", rel, err, h.sftp.Files(), h.env.KeeplogLog(40))
	}
	if got, want := sha(t, remote), sha(t, filepath.Join(h.env.PodDir(a.Pod), rel)); got != want {
		t.Fatalf("%s: archived sha256 %s, local %s", rel, got, want)
	}
}

// archivedAlready checks, without waiting, that the app's dump file is on the SFTP server, identical to the local one.
func (h *heapEnv) archivedAlready(t *testing.T, a *framework.HeapApp, file string) {
	t.Helper()
	rel := "app/" + filepath.Base(file)
	remote := h.sftp.Archived(t, podRef(a.Pod), rel)
	if _, err := os.Stat(remote); err != nil {
		t.Fatalf("%s: DumpFinished said archived, but the server does not have it yet: %v\nserver: %v", rel, err, h.sftp.Files())
	}
	if got, want := sha(t, remote), sha(t, filepath.Join(h.env.PodDir(a.Pod), rel)); got != want {
		t.Fatalf("%s: archived sha256 %s, local %s", rel, got, want)
	}
}

// events lists the pod's Events, "Reason: message" (count).
func (h *heapEnv) events(ctx context.Context, pod *corev1.Pod) string {
	evs, err := h.env.Client.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, e := range evs.Items {
		if e.InvolvedObject.UID == pod.UID {
			out = append(out, fmt.Sprintf("%s %s: %s (%d)", e.Type, e.Reason, e.Message, e.Count))
		}
	}
	return strings.Join(out, "\n")
}

func (h *heapEnv) annotate(ctx context.Context, t *testing.T, pod *corev1.Pod, kv string) {
	t.Helper()
	if out, err := h.env.Lab.Kubectl(ctx, "annotate", "pod", "-n", pod.Namespace, pod.Name, "--overwrite", kv); err != nil {
		t.Fatalf("kubectl annotate %s: %v\n%s", kv, err, out)
	}
}

func (h *heapEnv) thresholdFirstOnlyRearm(ctx context.Context, t *testing.T) {
	ns := "dump-threshold"
	mustNamespace(ctx, t, h.env, ns)
	a := h.app(ctx, t, ns, "java", false, nil)
	h.stillDumps(t, a, 0, 3*time.Second)   // below the threshold: nothing
	if err := a.Hog(ctx, 54); err != nil { // 54 of 64 MiB, plus the shell and httpd: above 80 %
		t.Fatal(err)
	}
	log := h.waitDumps(ctx, t, a, 1, 30*time.Second)
	if len(log.Hogs) != 1 || log.Dumps[0].Start-log.Hogs[0] > 10 {
		t.Fatalf("dump started %.2fs after the memory crossed the threshold, want within 10s: %+v", log.Dumps[0].Start-log.Hogs[0], log)
	}
	t.Logf("dump started %.2fs after the hog", log.Dumps[0].Start-log.Hogs[0])
	// "written and archived" means the server has it: the file is there the moment the Event is.
	waitEvent(ctx, t, h.env, a.Pod, api.ReasonDumpFinished)
	h.archivedAlready(t, a, log.Dumps[0].File)

	// Still above, past the 5s cooldown: firstOnly keeps it at one dump, and says so.
	h.stillDumps(t, a, 1, 8*time.Second)
	if ev := h.events(ctx, a.Pod); !strings.Contains(ev, "dumped already (firstOnly") {
		t.Fatalf("no DumpSkipped event for firstOnly:\n%s", ev)
	}

	// Re-armed: a second dump, archived too; then firstOnly holds again.
	h.annotate(ctx, t, a.Pod, api.AnnotationDumpRearm+"=1")
	log = h.waitDumps(ctx, t, a, 2, 30*time.Second)
	h.archived(ctx, t, a, log.Dumps[1].File)
	waitEvent(ctx, t, h.env, a.Pod, api.ReasonDumpRearmed)
	h.stillDumps(t, a, 2, 8*time.Second)
}

// clusterSlot: with --dump-cluster-max=1, two pods crossing at once are dumped one after the other.
func (h *heapEnv) clusterSlot(ctx context.Context, t *testing.T) {
	ns := "dump-slot"
	mustNamespace(ctx, t, h.env, ns)
	apps := []*framework.HeapApp{h.app(ctx, t, ns, "burstable", false, nil), h.app(ctx, t, ns, "guaranteed", true, nil)}
	var wg sync.WaitGroup
	errs := make(chan error, len(apps))
	for _, a := range apps {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- a.Hog(ctx, 54) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var dumps []framework.DumpRecord
	for _, a := range apps {
		log := h.waitDumps(ctx, t, a, 1, 90*time.Second)
		dumps = append(dumps, log.Dumps[0])
		h.archived(ctx, t, a, log.Dumps[0].File)
	}
	first, second := dumps[0], dumps[1]
	if second.Start < first.Start {
		first, second = second, first
	}
	if second.Start < first.End {
		t.Fatalf("dumps overlap with one cluster slot: %+v and %+v", first, second)
	}
	t.Logf("second dump started %.2fs after the first ended (the slot is held until the first is archived)", second.Start-first.End)
	if _, err := h.env.Client.CoordinationV1().Leases("kube-system").Get(ctx, "keeplog-dump-0", metav1.GetOptions{}); err != nil {
		t.Fatalf("the dumps did not go through the Lease semaphore: %v", err)
	}
}

func (h *heapEnv) manual(ctx context.Context, t *testing.T) {
	ns := "dump-manual"
	mustNamespace(ctx, t, h.env, ns)
	// The value a pod is created with is not a request (a template carrying it must not dump every new pod).
	a := h.app(ctx, t, ns, "asked", false, map[string]string{api.AnnotationDumpRequested: "from-template"})
	h.stillDumps(t, a, 0, 3*time.Second)
	h.annotate(ctx, t, a.Pod, api.AnnotationDumpRequested+"=please-1")
	log := h.waitDumps(ctx, t, a, 1, 30*time.Second)
	h.archived(ctx, t, a, log.Dumps[0].File)
	if ev := h.events(ctx, a.Pod); !strings.Contains(ev, `requested (keeplog.csi.io/dump-requested="please-1")`) {
		t.Fatalf("no DumpTriggered event naming the request:\n%s", ev)
	}
	h.stillDumps(t, a, 1, 4*time.Second)
}

// exec: a pod that asks for dumps by a command; keeplog runs it through the API's exec subresource.
func (h *heapEnv) exec(ctx context.Context, t *testing.T) {
	ns := "dump-exec"
	mustNamespace(ctx, t, h.env, ns)
	a := h.app(ctx, t, ns, "jcmd", false, map[string]string{api.AnnotationDumpExec: "sh /www/cgi-bin/dump >/dev/null"})
	h.annotate(ctx, t, a.Pod, api.AnnotationDumpRequested+"=exec-1")
	log := h.waitDumps(ctx, t, a, 1, 30*time.Second)
	// "written and archived" means the server has it: the file is there the moment the Event is.
	waitEvent(ctx, t, h.env, a.Pod, api.ReasonDumpFinished)
	h.archivedAlready(t, a, log.Dumps[0].File)
	if ev := h.events(ctx, a.Pod); !strings.Contains(ev, `exec in container app: "sh /www/cgi-bin/dump >/dev/null"`) {
		t.Fatalf("no event naming the exec:\n%s", ev)
	}
}

func (h *heapEnv) alertmanager(ctx context.Context, t *testing.T) {
	ns := "dump-alert"
	mustNamespace(ctx, t, h.env, ns)
	a := h.app(ctx, t, ns, "alerted", false, nil)
	payload := fmt.Sprintf(`{"version":"4","status":"firing","receiver":"keeplog","groupLabels":{},"commonLabels":{},
"alerts":[{"status":"firing","labels":{"alertname":"JavaHeapHigh","namespace":%q,"pod":%q,"container":"app"},
"annotations":{},"startsAt":%q,"endsAt":"0001-01-01T00:00:00Z","fingerprint":"e2e0000000000001"}]}`,
		ns, a.Pod.Name, time.Now().UTC().Format(time.RFC3339Nano))
	if code, _ := h.post(t, payload, ""); code != http.StatusUnauthorized {
		t.Fatalf("webhook without the token: status %d, want 401", code)
	}
	code, body := h.post(t, payload, "e2e-token")
	if code != http.StatusOK || !strings.Contains(body, `"result":"requested"`) {
		t.Fatalf("webhook: %d %s", code, body)
	}
	log := h.waitDumps(ctx, t, a, 1, 30*time.Second)
	h.archived(ctx, t, a, log.Dumps[0].File)
	// Alertmanager repeats the same alert: no second dump.
	code, body = h.post(t, payload, "e2e-token")
	if code != http.StatusOK || !strings.Contains(body, `"result":"unchanged"`) {
		t.Fatalf("repeated alert: %d %s", code, body)
	}
	h.stillDumps(t, a, 1, 4*time.Second)
	p, err := h.env.Client.CoreV1().Pods(ns).Get(ctx, a.Pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var res struct{ Results []dump.WebhookResult }
	_ = json.Unmarshal([]byte(body), &res)
	if len(res.Results) != 1 || p.Annotations[api.AnnotationDumpRequested] != res.Results[0].Value {
		t.Fatalf("pod annotation %q, webhook answer %s", p.Annotations[api.AnnotationDumpRequested], body)
	}
	// The plugin's /metrics (same listener) counts what the receiver did.
	resp, err := http.Get(strings.TrimSuffix(h.webhook, dump.WebhookPath) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`keeplog_dump_webhook_requests_total{code="401"} 1`, `keeplog_dump_webhook_requests_total{code="200"} 2`,
		`keeplog_dump_webhook_alerts_total{result="requested"} 1`, `keeplog_dump_webhook_alerts_total{result="unchanged"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func (h *heapEnv) post(t *testing.T, body, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.webhook, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", h.webhook, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
