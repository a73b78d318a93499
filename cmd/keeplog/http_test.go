package main

import (
	"flag"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsAuthMode: by default (auto) /metrics on every address (the chart's ":9808", hostNetwork) or a node IP
// needs Kubernetes authentication; only a loopback listener is served open.
func TestMetricsAuthMode(t *testing.T) {
	for _, tc := range []struct{ mode, addr, want string }{
		{"auto", ":9808", "kubernetes"},
		{"auto", "0.0.0.0:9808", "kubernetes"},
		{"auto", "10.0.0.5:9808", "kubernetes"},
		{"auto", "[::]:9808", "kubernetes"},
		{"auto", "127.0.0.1:9808", "none"},
		{"auto", "[::1]:9808", "none"},
		{"auto", "localhost:9808", "none"},
		{"none", ":9808", "none"},
		{"kubernetes", "127.0.0.1:9808", "kubernetes"},
	} {
		if got := metricsAuthMode(tc.mode, tc.addr); got != tc.want {
			t.Errorf("--metrics-auth=%s --http-address=%s: %s, want %s", tc.mode, tc.addr, got, tc.want)
		}
	}
}

// TestGuardedMetricsWithoutAPIAccessIsUnavailable: a /metrics that needs authentication never falls open when there
// is no API server to ask.
func TestGuardedMetricsWithoutAPIAccessIsUnavailable(t *testing.T) {
	c := &components{opts: &Options{MetricsAuth: "auto", HTTPAddress: ":9808"}, reg: prometheus.NewRegistry()}
	h, err := c.metricsHandler()
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("guarded /metrics without API access: %d, want 503", rec.Code)
	}
	c.opts.HTTPAddress = "127.0.0.1:9808"
	if h, err = c.metricsHandler(); err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("loopback /metrics: %d, want 200", rec.Code)
	}
}

// TestMetricsAreNotCompressed: /metrics answers a scraper that accepts gzip uncompressed (gzip cost about a megabyte
// of compressor state per scrape for a page of tens of kilobytes).
func TestMetricsAreNotCompressed(t *testing.T) {
	c := &components{opts: &Options{MetricsAuth: "none", HTTPAddress: "127.0.0.1:9808"}, reg: prometheus.NewRegistry()}
	c.reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "keeplog_test_total", Help: "a test counter"}))
	h, err := c.metricsHandler()
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if enc := rec.Header().Get("Content-Encoding"); enc != "" || !strings.Contains(rec.Body.String(), "keeplog_test_total 0") {
		t.Fatalf("/metrics with Accept-Encoding gzip: Content-Encoding %q, body %.80q; want plain text", enc, rec.Body.String())
	}
}

// TestWebhookWithoutTokenOnlyOnLoopbackOrWhenAllowed: --dump-webhook without a token file is refused on a public
// address unless explicitly allowed.
func TestWebhookWithoutTokenOnlyOnLoopbackOrWhenAllowed(t *testing.T) {
	validate := func(args ...string) error {
		o := &Options{}
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(append([]string{"--node-id=n"}, args...)); err != nil {
			t.Fatal(err)
		}
		return o.Validate()
	}
	if err := validate("--dump-webhook"); err == nil || !strings.Contains(err.Error(), "--dump-webhook-allow-unauthenticated") {
		t.Errorf("webhook without a token on :9808: %v", err)
	}
	for _, args := range [][]string{
		{"--dump-webhook", "--http-address=127.0.0.1:9808"},
		{"--dump-webhook", "--dump-webhook-token-file=/etc/keeplog/dump-webhook/token"},
		{"--dump-webhook", "--dump-webhook-allow-unauthenticated"},
	} {
		if err := validate(args...); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	if err := validate("--metrics-auth=tls"); err == nil || !strings.Contains(err.Error(), "--metrics-auth") {
		t.Errorf("--metrics-auth=tls: %v", err)
	}
}
