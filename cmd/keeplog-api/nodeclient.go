package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"github.com/keeplog/keeplog/internal/certreload"
)

// nodeClient is the HTTP client towards the nodes: their CA when given, the system's otherwise, and the name their
// certificates hold when they are not issued for each node's IP; never insecure. The CA file is read again at a
// connection when certreload's interval has passed (internal/certreload: a kubelet ..data swap, a file rewritten in
// place), each connection verifying with the bundle of the moment: a renewed CA in the mounted Secret applies
// without a restart, and a bundle that does not load keeps the previous one and is logged once, not at every read.
// (k8s.io/apiserver's dynamiccertificates, used before, logged a broken file at every retry of its work queue.)
func nodeClient(caFile, serverName string, ca certreload.Deps) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	tr := &http.Transport{Proxy: nil, TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 4,
		IdleConnTimeout: time.Minute, ResponseHeaderTimeout: 30 * time.Second}
	if caFile != "" {
		bundle, err := certreload.NewCA(certreload.CAConfig{File: caFile}, ca)
		if err != nil {
			return nil, err
		}
		tr.DialTLSContext = nodeDialer{cfg: tlsCfg, ca: bundle}.DialTLSContext
	}
	return &http.Client{Transport: tr}, nil
}

// nodeDialer makes the TLS connections to the nodes with the CA bundle read last.
type nodeDialer struct {
	cfg *tls.Config
	ca  *certreload.CA
}

// DialTLSContext is http.Transport's: it verifies the node's certificate against the current bundle (and the
// server name of cfg, else the address's host, as the transport would).
func (d nodeDialer) DialTLSContext(ctx context.Context, network, addr string) (net.Conn, error) {
	cfg := d.cfg.Clone()
	cfg.RootCAs = d.ca.Pool()
	td := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}, Config: cfg}
	return td.DialContext(ctx, network, addr)
}
