package dump

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/keeplog/keeplog/pkg/api"
)

// WebhookPath is where keeplog serves the Alertmanager receiver on its --http-address.
const WebhookPath = "/alertmanager"

// maxWebhookBody bounds an Alertmanager payload (its default max_alerts is unlimited; 1000 alerts fit easily).
const maxWebhookBody = 4 << 20

// Alertmanager's webhook payload (version 4), the fields keeplog reads.
type amPayload struct {
	Version string    `json:"version"`
	Alerts  []amAlert `json:"alerts"`
}

type amAlert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	StartsAt    time.Time         `json:"startsAt"`
	Fingerprint string            `json:"fingerprint"`
}

// WebhookResult is what the receiver did with one alert (its answer lists them).
type WebhookResult struct {
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	// Result: requested (the annotation was set), unchanged (this alert was acted on already), resolved, no-pod
	// (the alert names no pod), not-found, not-opted-in, error.
	Result string `json:"result"`
	Value  string `json:"value,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Webhook is an Alertmanager-compatible receiver: each firing alert whose labels name a pod (namespace and pod, or
// pod_name) sets that pod's dump-requested annotation to a value derived from the alert (fingerprint and start), so
// the keeplog node plugin on the pod's node takes one dump; Alertmanager's repeats of the same alert set the same
// value and so do not dump again. Only pods that opted in to dumps are patched.
type Webhook struct {
	client    Pods
	tokenFile string
	log       logr.Logger
	requests  *prometheus.CounterVec // by HTTP status code
	alerts    *prometheus.CounterVec // by WebhookResult.Result
	handler   http.Handler           // serve, counted into requests
}

// Pods reads and patches pods (kube.Clients).
type Pods interface {
	GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
	// PatchPod applies a JSON merge patch.
	PatchPod(ctx context.Context, namespace, name string, mergePatch []byte) error
}

// webhookResults are the values of WebhookResult.Result (the labels of keeplog_dump_webhook_alerts_total).
var webhookResults = []string{"requested", "unchanged", "resolved", "no-pod", "not-found", "not-opted-in", "error"}

// NewWebhook patches pods with client. With tokenFile, requests must carry "Authorization: Bearer <the file's
// content>" (read at each request, so it can be rotated). Its metrics go to reg (nil: not registered).
func NewWebhook(client Pods, tokenFile string, log logr.Logger, reg prometheus.Registerer) (*Webhook, error) {
	w := &Webhook{client: client, tokenFile: tokenFile, log: log,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: api.MetricDumpWebhookRequestsTotal,
			Help: "Requests to the Alertmanager receiver by HTTP status answered (401: bad token, 400: bad payload, 500: an API error Alertmanager retries)."},
			[]string{"code"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: api.MetricDumpWebhookAlertsTotal,
			Help: "Alerts received by the Alertmanager receiver by what was done: requested (a dump), unchanged, resolved, no-pod, not-found, not-opted-in, error."},
			[]string{"result"}),
	}
	for _, r := range webhookResults {
		w.alerts.WithLabelValues(r)
	}
	w.handler = promhttp.InstrumentHandlerCounter(w.requests, http.HandlerFunc(w.serve))
	if reg != nil {
		for _, c := range []prometheus.Collector{w.requests, w.alerts} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register the dump webhook's metrics: %w", err)
			}
		}
	}
	return w, nil
}

// RequestValue is the dump-requested value for an alert: its fingerprint (or a hash of its labels) and start time.
func RequestValue(fingerprint string, labels map[string]string, startsAt time.Time) string {
	if fingerprint == "" {
		keys := make([]string, 0, len(labels))
		for k := range labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		h := sha256.New()
		for _, k := range keys {
			_, _ = fmt.Fprintf(h, "%s=%s\x00", k, labels[k]) // a hash.Hash never returns a write error
		}
		fingerprint = hex.EncodeToString(h.Sum(nil))[:16]
	}
	return "alert-" + fingerprint + "-" + startsAt.UTC().Format("20060102T150405Z")
}

func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) { w.handler.ServeHTTP(rw, r) }

func (w *Webhook) serve(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		http.Error(rw, "POST an Alertmanager webhook payload", http.StatusMethodNotAllowed)
		return
	}
	if w.tokenFile != "" {
		want, err := os.ReadFile(w.tokenFile)
		if err != nil {
			w.log.Error(err, "Could not read the webhook token file", "file", w.tokenFile)
			http.Error(rw, "token file unreadable", http.StatusInternalServerError)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		tok := strings.TrimSpace(string(want))
		if !ok || tok == "" || subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
			http.Error(rw, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	var p amPayload
	body, err := io.ReadAll(io.LimitReader(r.Body, maxWebhookBody+1))
	if err == nil && len(body) > maxWebhookBody {
		err = fmt.Errorf("payload larger than %d bytes", maxWebhookBody)
	}
	if err == nil {
		err = json.Unmarshal(body, &p)
	}
	if err != nil {
		http.Error(rw, "not an Alertmanager webhook payload: "+err.Error(), http.StatusBadRequest)
		return
	}
	results, retry := w.handleAll(r.Context(), p.Alerts)
	rw.Header().Set("Content-Type", "application/json")
	if retry { // Alertmanager retries on 5xx
		rw.WriteHeader(http.StatusInternalServerError)
	}
	_ = json.NewEncoder(rw).Encode(map[string]any{"results": results})
}

// handleAll acts on alerts; retry is true when an API error may go away (the caller should answer 5xx).
func (w *Webhook) handleAll(ctx context.Context, alerts []amAlert) (results []WebhookResult, retry bool) {
	for _, a := range alerts {
		res := w.handle(ctx, a)
		w.alerts.WithLabelValues(res.Result).Inc()
		if res.Result == "error" {
			retry = true
		}
		w.log.V(2).Info("Alertmanager alert", "namespace", res.Namespace, "pod", res.Pod, "result", res.Result,
			"value", res.Value, "error", res.Error)
		results = append(results, res)
	}
	return results, retry
}

func (w *Webhook) handle(ctx context.Context, a amAlert) WebhookResult {
	ns, pod := a.Labels["namespace"], a.Labels["pod"]
	if pod == "" {
		pod = a.Labels["pod_name"]
	}
	res := WebhookResult{Namespace: ns, Pod: pod}
	switch {
	case a.Status != "firing":
		res.Result = "resolved"
		return res
	case ns == "" || pod == "":
		res.Result = "no-pod"
		return res
	}
	res.Value = RequestValue(a.Fingerprint, a.Labels, a.StartsAt)
	p, err := w.client.GetPod(ctx, ns, pod)
	if apierrors.IsNotFound(err) {
		res.Result = "not-found"
		return res
	}
	if err != nil {
		res.Result, res.Error = "error", err.Error()
		return res
	}
	if !OptedIn(p.Annotations) {
		res.Result = "not-opted-in"
		return res
	}
	if p.Annotations[api.AnnotationDumpRequested] == res.Value {
		res.Result = "unchanged"
		return res
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{api.AnnotationDumpRequested: res.Value}}})
	if err := w.client.PatchPod(ctx, ns, pod, patch); err != nil {
		if apierrors.IsNotFound(err) {
			res.Result = "not-found"
			return res
		}
		res.Result, res.Error = "error", err.Error()
		return res
	}
	res.Result = "requested"
	return res
}
