package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/certreload"
	"github.com/keeplog/keeplog/internal/httpauth"
	"github.com/keeplog/keeplog/pkg/retrieval"
)

// setupRetrieval adds the read endpoint for retained pod directories (--retrieval-address) behind Kubernetes
// authentication and authorization (internal/httpauth). It is never served open: without API access keeplog
// refuses to start with it.
func setupRetrieval(c *components) error {
	o := c.opts.Retrieval
	if o.Address == "" {
		return nil
	}
	if c.kube == nil {
		return errors.New("--retrieval-address needs Kubernetes API access (every request is checked with a TokenReview and a SubjectAccessReview)")
	}
	h, err := retrieval.New(retrieval.Config{Bandwidth: o.bytesPerSecond, MaxStreams: o.MaxStreams, Policy: c.opts.GC.policyDefaults()},
		retrieval.Deps{Store: c.store})
	if err != nil {
		return err
	}
	g, err := httpauth.New(httpauth.Config{}, httpauth.Deps{Tokens: c.kube.TokenReviews(),
		Access: c.kube.SubjectAccessReviews(), Clock: clock.RealClock{}})
	if err != nil {
		return err
	}
	var cert *certreload.Pair
	if o.TLSCertFile != "" {
		if cert, err = certreload.New(certreload.Config{CertFile: o.TLSCertFile, KeyFile: o.TLSKeyFile},
			certreload.Deps{Log: klog.Background().WithName("retrieval-tls")}); err != nil {
			return fmt.Errorf("--retrieval-tls-cert-file: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle(retrieval.PathPrefix+"/", g.Protect(h))
	c.add("retrieval", func(ctx context.Context) error { return serveRetrieval(ctx, o, mux, cert) })
	return nil
}

// serveRetrieval serves handler on the retrieval address until ctx ends: HTTPS with cert when there is one (read
// again when its files change: a rotated certificate is served without a restart), plain HTTP (loopback only,
// Validate) when nil.
func serveRetrieval(ctx context.Context, o RetrievalOptions, handler http.Handler, cert *certreload.Pair) error {
	l, err := net.Listen("tcp", o.Address)
	if err != nil {
		return fmt.Errorf("listen for retrieval on %s: %w", o.Address, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	klog.InfoS("Serving retained pod directories to authorized callers", "address", l.Addr().String(), "tls", cert != nil,
		"bandwidth", o.bytesPerSecond, "maxStreams", o.MaxStreams)
	if cert != nil {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cert.GetCertificate}
		err = srv.ServeTLS(l, "", "")
	} else {
		err = srv.Serve(l)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("retrieval server on %s: %w", o.Address, err)
	}
	return nil
}
