package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"
)

// nodeClient is the HTTP client towards the nodes: their CA when given, the system's otherwise, and the name their
// certificates hold when they are not issued for each node's IP; never insecure. The CA file is read again when it
// changes until ctx ends (k8s.io/apiserver's dynamiccertificates: a watch on the file and its kubelet ..data swap),
// each connection verifying with the bundle of the moment: a renewed CA in the mounted Secret applies without a
// restart, and a bundle that does not load keeps the previous one.
func nodeClient(ctx context.Context, caFile, serverName string) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	tr := &http.Transport{Proxy: nil, TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 4,
		IdleConnTimeout: time.Minute, ResponseHeaderTimeout: 30 * time.Second}
	if caFile != "" {
		ca, err := dynamiccertificates.NewDynamicCAContentFromFile("node-ca", caFile)
		if err != nil {
			return nil, err
		}
		go ca.Run(ctx, 1)
		tr.DialTLSContext = nodeDialer{cfg: tlsCfg, ca: ca}.DialTLSContext
	}
	return &http.Client{Transport: tr}, nil
}

// nodeDialer makes the TLS connections to the nodes with the CA bundle read last.
type nodeDialer struct {
	cfg *tls.Config
	ca  *dynamiccertificates.DynamicFileCAContent
}

// DialTLSContext is http.Transport's: it verifies the node's certificate against the current bundle (and the
// server name of cfg, else the address's host, as the transport would).
func (d nodeDialer) DialTLSContext(ctx context.Context, network, addr string) (net.Conn, error) {
	cfg := d.cfg.Clone()
	opts, _ := d.ca.VerifyOptions() // loaded at start, never unloaded
	cfg.RootCAs = opts.Roots
	td := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}, Config: cfg}
	return td.DialContext(ctx, network, addr)
}
