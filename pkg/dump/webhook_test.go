package dump

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/klog/v2"

	"github.com/keeplog/keeplog/pkg/api"
)

// payload is an Alertmanager v4 webhook body as Alertmanager 0.27 sends it (trimmed of nothing keeplog ignores).
const payload = `{
  "receiver": "keeplog", "status": "firing", "version": "4", "groupKey": "{}:{alertname=\"JavaHeapHigh\"}",
  "truncatedAlerts": 0, "groupLabels": {"alertname": "JavaHeapHigh"}, "commonLabels": {}, "commonAnnotations": {},
  "externalURL": "http://alertmanager:9093",
  "alerts": [
    {"status": "firing", "labels": {"alertname": "JavaHeapHigh", "namespace": "shop", "pod": "java-0", "container": "app"},
     "annotations": {"summary": "heap"}, "startsAt": "2025-03-01T10:00:00.123Z", "endsAt": "0001-01-01T00:00:00Z",
     "generatorURL": "http://prometheus/graph", "fingerprint": "c0ffee1234567890"},
    {"status": "firing", "labels": {"alertname": "JavaHeapHigh", "namespace": "shop", "pod_name": "plain"},
     "startsAt": "2025-03-01T10:00:00Z", "fingerprint": "aaaa"},
    {"status": "firing", "labels": {"alertname": "JavaHeapHigh", "namespace": "shop", "pod": "gone"},
     "startsAt": "2025-03-01T10:00:00Z", "fingerprint": "bbbb"},
    {"status": "resolved", "labels": {"alertname": "JavaHeapHigh", "namespace": "shop", "pod": "java-1"},
     "startsAt": "2025-03-01T09:00:00Z", "fingerprint": "cccc"},
    {"status": "firing", "labels": {"alertname": "NodeDown"}, "startsAt": "2025-03-01T10:00:00Z", "fingerprint": "dddd"}
  ]
}`

func optedInPod(name string, extra map[string]string) *corev1.Pod {
	ann := map[string]string{api.AnnotationDumpPort: "8080", api.AnnotationDumpPath: "/dump"}
	for k, v := range extra {
		ann[k] = v
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Annotations: ann}}
}

func post(t *testing.T, h http.Handler, body, auth string) (*httptest.ResponseRecorder, []WebhookResult) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, WebhookPath, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out struct{ Results []WebhookResult }
	if rec.Code == http.StatusOK || rec.Code == http.StatusInternalServerError {
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer %d %q: %v", rec.Code, rec.Body, err)
		}
	}
	return rec, out.Results
}

func TestWebhookPatchesFiringAlertsOnce(t *testing.T) {
	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "plain"}}
	client := fake.NewClientset(optedInPod("java-0", nil), plain, optedInPod("java-1", nil))
	w, err := NewWebhook(fakePods{client}, "", klog.Background(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	rec, res := post(t, w, payload, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	got := []string{}
	for _, r := range res {
		got = append(got, r.Pod+":"+r.Result)
	}
	want := "java-0:requested plain:not-opted-in gone:not-found java-1:resolved :no-pod"
	if strings.Join(got, " ") != want {
		t.Fatalf("results %q, want %q", strings.Join(got, " "), want)
	}
	p, err := client.CoreV1().Pods("shop").Get(context.Background(), "java-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v := p.Annotations[api.AnnotationDumpRequested]; v != "alert-c0ffee1234567890-20250301T100000Z" || p.Annotations[api.AnnotationDumpPort] != "8080" {
		t.Fatalf("annotations after the patch: %v", p.Annotations)
	}
	for _, name := range []string{"plain", "java-1"} {
		p, _ := client.CoreV1().Pods("shop").Get(context.Background(), name, metav1.GetOptions{})
		if _, set := p.Annotations[api.AnnotationDumpRequested]; set {
			t.Fatalf("%s patched: %v", name, p.Annotations)
		}
	}

	// Alertmanager repeats the notification (repeat_interval): same fingerprint and start, nothing patched.
	patches := 0
	client.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		patches++
		return false, nil, nil
	})
	_, res = post(t, w, payload, "")
	if res[0].Result != "unchanged" || patches != 0 {
		t.Fatalf("repeat: %+v, %d patches", res[0], patches)
	}
	// The alert fires again later (new startsAt): a new request.
	_, res = post(t, w, strings.Replace(payload, "2025-03-01T10:00:00.123Z", "2025-03-02T08:00:00Z", 1), "")
	if res[0].Result != "requested" || patches != 1 {
		t.Fatalf("new firing: %+v, %d patches", res[0], patches)
	}
	// Three payloads of five alerts each: two dumps requested in the first and one in the third.
	for result, want := range map[string]float64{"requested": 2, "unchanged": 1, "not-opted-in": 3, "not-found": 3, "resolved": 3, "no-pod": 3, "error": 0} {
		if got := counterValue(t, w.alerts.WithLabelValues(result)); got != want {
			t.Errorf("keeplog_dump_webhook_alerts_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	if got := counterValue(t, w.requests.WithLabelValues("200")); got != 3 {
		t.Errorf("keeplog_dump_webhook_requests_total{code=\"200\"} = %v, want 3", got)
	}
}

func TestWebhookErrorsAndAuth(t *testing.T) {
	client := fake.NewClientset(optedInPod("java-0", nil))
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := NewWebhook(fakePods{client}, tokenFile, klog.Background(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range []string{"", "Bearer wrong", "s3cret", "Basic czNjcmV0"} {
		if rec, _ := post(t, w, payload, auth); rec.Code != http.StatusUnauthorized {
			t.Fatalf("Authorization %q: status %d", auth, rec.Code)
		}
	}
	if rec, _ := post(t, w, "{not json", "Bearer s3cret"); rec.Code != http.StatusBadRequest {
		t.Fatalf("malformed payload: status %d", rec.Code)
	}
	req := httptest.NewRequest(http.MethodGet, WebhookPath, nil)
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET: status %d", rec.Code)
	}
	// An API error is answered 500, so that Alertmanager retries.
	client.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("etcd is having a bad day")
	})
	rec, res := post(t, w, payload, "Bearer s3cret")
	if rec.Code != http.StatusInternalServerError || res[0].Result != "error" || !strings.Contains(res[0].Error, "bad day") {
		t.Fatalf("API error: status %d, %+v", rec.Code, res)
	}
	for code, want := range map[string]float64{"401": 4, "400": 1, "405": 1, "500": 1, "200": 0} {
		if got := counterValue(t, w.requests.WithLabelValues(code)); got != want {
			t.Errorf("keeplog_dump_webhook_requests_total{code=%q} = %v, want %v", code, got, want)
		}
	}
	if got := counterValue(t, w.alerts.WithLabelValues("error")); got != 1 {
		t.Errorf("keeplog_dump_webhook_alerts_total{result=\"error\"} = %v, want 1", got)
	}
}

func TestRequestValueWithoutFingerprint(t *testing.T) {
	a := RequestValue("", map[string]string{"pod": "x", "namespace": "y"}, metav1.Now().Time)
	b := RequestValue("", map[string]string{"namespace": "y", "pod": "x"}, metav1.Now().Time)
	c := RequestValue("", map[string]string{"namespace": "y", "pod": "z"}, metav1.Now().Time)
	if a[:len("alert-")+16] != b[:len("alert-")+16] || a[:len("alert-")+16] == c[:len("alert-")+16] {
		t.Fatalf("label hash not stable or not distinct: %s %s %s", a, b, c)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var out dto.Metric
	if err := c.Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetCounter().GetValue()
}

// fakePods is a fake clientset as the webhook's Pods (keeplog's are kube.Clients').
type fakePods struct{ *fake.Clientset }

func (f fakePods) GetPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	return f.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
}

func (f fakePods) PatchPod(ctx context.Context, ns, name string, patch []byte) error {
	_, err := f.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}
