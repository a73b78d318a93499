//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keeplog/keeplog/test/e2e/framework"
)

// The chart's metrics.readers in the lab (framework.ChartValues) binds this ServiceAccount to
// <release>-metrics-reader; chartOutsider is not bound to anything.
const (
	chartScraperNamespace = framework.ChartScraperNamespace
	chartScraper          = framework.ChartScraper
	chartOutsider         = "outsider"
)

// chartMetricsAuth: with the chart's defaults (metrics.auth=kubernetes) keeplog's port on the node's own address
// (not loopback: hostNetwork opens it on every address) refuses /metrics without a token (401) and with the token of
// a ServiceAccount that may not get /metrics (403), and serves it to the ServiceAccount bound by metrics.readers;
// /healthz stays open for kubelet's probe.
func chartMetricsAuth(ctx context.Context, t *testing.T, env *framework.Env) {
	base := chartNodeURL(ctx, t, env)
	if code, body := get(ctx, t, base+"/healthz", ""); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("GET %s/healthz without a token: %d %q, want 200 ok", base, code, body)
	}
	if code, body := get(ctx, t, base+"/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("GET %s/metrics without a token: %d, want 401\n%.300s", base, code, body)
	}
	if code, _ := get(ctx, t, base+"/metrics", "not-a-token"); code != http.StatusUnauthorized {
		t.Errorf("GET /metrics with a forged token: %d, want 401", code)
	}
	if code, body := get(ctx, t, base+"/metrics", serviceAccountToken(ctx, t, env, chartOutsider)); code != http.StatusForbidden {
		t.Errorf("GET /metrics as a ServiceAccount not allowed /metrics: %d, want 403\n%.300s", code, body)
	}
	code, body := get(ctx, t, base+"/metrics", serviceAccountToken(ctx, t, env, chartScraper))
	if code != http.StatusOK || !strings.Contains(body, "keeplog_loop_last_progress_seconds") {
		t.Errorf("GET /metrics as %s/%s (metrics.readers): %d, want 200 with keeplog's metrics\n%.300s", chartScraperNamespace, chartScraper, code, body)
	}
	t.Logf("%s/metrics: 401 without a token, 403 for %s, 200 for %s (metrics.readers)", base, chartOutsider, chartScraper)
}

// chartNodeURL is http://<node IP>:<metrics.port> of the DaemonSet's pod: its host IP, the node's own address.
func chartNodeURL(ctx context.Context, t *testing.T, env *framework.Env) string {
	t.Helper()
	list, err := env.Client.CoreV1().Pods(chartNamespace).List(ctx, metav1.ListOptions{LabelSelector: chartSelector})
	if err != nil || len(list.Items) != 1 || list.Items[0].Status.HostIP == "" {
		t.Fatalf("keeplog pod: %v %+v", err, list)
	}
	ip := net.ParseIP(list.Items[0].Status.HostIP)
	if ip == nil || ip.IsLoopback() {
		t.Fatalf("the node's address %q is not a non-loopback IP: this test needs the node's own address", list.Items[0].Status.HostIP)
	}
	return "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(chartMetricsPort))
}

// serviceAccountToken makes the ServiceAccount (in chartScraperNamespace) if needed and returns a short-lived token
// for it from the TokenRequest API.
func serviceAccountToken(ctx context.Context, t *testing.T, env *framework.Env, name string) string {
	t.Helper()
	if err := env.CreateNamespace(ctx, chartScraperNamespace); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	sas := env.Client.CoreV1().ServiceAccounts(chartScraperNamespace)
	if _, err := sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	seconds := int64(600)
	tr, err := sas.CreateToken(ctx, name, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &seconds}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", chartScraperNamespace, name, err)
	}
	return tr.Status.Token
}

// get is one GET with an optional bearer token: the status and up to 1 MiB of the body.
func get(ctx context.Context, t *testing.T, url, token string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// scrape is /metrics on the node's address as the metrics.readers ServiceAccount.
func scrape(ctx context.Context, t *testing.T, env *framework.Env) (string, error) {
	t.Helper()
	code, body := get(ctx, t, chartNodeURL(ctx, t, env)+"/metrics", serviceAccountToken(ctx, t, env, chartScraper))
	if code != http.StatusOK {
		return body, fmt.Errorf("/metrics: HTTP %d", code)
	}
	return body, nil
}
