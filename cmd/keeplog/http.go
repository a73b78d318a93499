package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/httpauth"
	"github.com/keeplog/keeplog/internal/liveness"
	"github.com/keeplog/keeplog/pkg/driver"
)

// Values of --metrics-auth.
const (
	metricsAuthAuto       = "auto"       // kubernetes, unless --http-address is a loopback address
	metricsAuthKubernetes = "kubernetes" // TokenReview + SubjectAccessReview (internal/httpauth)
	metricsAuthNone       = "none"
)

// metricsAuthMode resolves --metrics-auth=auto: a loopback listener is reachable only from the node, where /metrics
// reveals nothing root there cannot read; any other address (the chart's ":9808" with hostNetwork is every address
// of the node) needs Kubernetes authentication.
func metricsAuthMode(mode, httpAddress string) string {
	if mode != metricsAuthAuto {
		return mode
	}
	if isLoopbackAddress(httpAddress) {
		return metricsAuthNone
	}
	return metricsAuthKubernetes
}

// isLoopbackAddress: host:port whose host is a loopback IP or "localhost" (an empty host is every address).
func isLoopbackAddress(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// metricsHandler is /metrics as --metrics-auth says: open, or behind Kubernetes authentication and authorization.
// Without API access nothing can be checked, so a guarded /metrics answers 503 rather than opening up.
func (c *components) metricsHandler() (http.Handler, error) {
	// Uncompressed: the page is tens of kilobytes, and gzip allocates about a megabyte of compressor state for each
	// scrape (its pool is emptied by every garbage collection), which was the largest single allocation of an idle
	// node plugin.
	h := promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{DisableCompression: true})
	mode := metricsAuthMode(c.opts.MetricsAuth, c.opts.HTTPAddress)
	if mode == metricsAuthNone {
		klog.InfoS("/metrics is served without authentication", "address", c.opts.HTTPAddress, "metricsAuth", c.opts.MetricsAuth)
		return h, nil
	}
	if c.kube == nil {
		klog.InfoS("/metrics needs Kubernetes authentication but there is no API access: it answers 503", "address", c.opts.HTTPAddress)
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "/metrics needs Kubernetes authentication and keeplog has no API access", http.StatusServiceUnavailable)
		}), nil
	}
	g, err := httpauth.New(httpauth.Config{}, httpauth.Deps{Tokens: c.kube.TokenReviews(),
		Access: c.kube.SubjectAccessReviews(), Clock: clock.RealClock{}})
	if err != nil {
		return nil, err
	}
	klog.InfoS("/metrics requires a bearer token allowed to get the non-resource URL /metrics", "address", c.opts.HTTPAddress)
	return g.Protect(h), nil
}

// serveHTTP serves /healthz (the driver can read its root and records, and no long-running loop has stalled;
// unauthenticated, for kubelet's probe) and metrics at /metrics until ctx ends; extra handlers bring their own
// authentication (the dump webhook's token).
func serveHTTP(ctx context.Context, addr string, drv *driver.Driver, live *liveness.Registry, metrics http.Handler, extra map[string]http.Handler) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := errors.Join(drv.Healthy(), live.Check()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ok") // a client that hung up has nothing to be told
	})
	mux.Handle("/metrics", metrics)
	for path, h := range extra {
		mux.Handle(path, h)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for health and metrics on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	klog.InfoS("Serving health and metrics", "address", l.Addr().String())
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("health and metrics server on %s: %w", addr, err)
	}
	return nil
}
