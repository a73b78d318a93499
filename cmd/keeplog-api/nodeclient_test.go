package main

import (
	"crypto/tls"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keeplog/keeplog/internal/certtest"
	"github.com/keeplog/keeplog/internal/fstest"
)

// TestNodeClient: the nodes' CA is trusted and nothing else; --node-server-name is the name checked instead of the
// node's IP (httptest's certificate holds example.com and 127.0.0.1).
func TestNodeClient(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ca, name string
		ok       bool
	}{{ca, "", true}, {ca, "example.com", true}, {ca, "keeplog-node.other", false}, {"", "", false}} {
		hc, err := nodeClient(t.Context(), tc.ca, tc.name)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("CA %q, server name %q: %v, want ok %v", tc.ca, tc.name, err, tc.ok)
		}
	}
	if _, err := nodeClient(t.Context(), filepath.Join(t.TempDir(), "none"), ""); err == nil {
		t.Error("a missing CA file was accepted")
	}
}

// selfSigned is a new key and a certificate for 127.0.0.1 it signs itself (a CA too), in PEM.
func selfSigned(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	_, c, k := certtest.SelfSigned(t, 1)
	return string(c), string(k)
}

// nodeServer is a node plugin's endpoint stand-in: an HTTPS server on loopback with its own self-signed certificate
// for 127.0.0.1, returned in PEM.
func nodeServer(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	certPEM, keyPEM := selfSigned(t)
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, certPEM
}

// TestNodeClientFollowsARenewedCA: --node-ca-file in a kubelet-style Secret volume trusts node A; after the Secret
// is changed to B's CA, new connections trust B and no longer A, without a new client (no restart); a bundle that
// does not parse keeps B trusted. Every request is a new connection (no kept-alive one hides the change).
func TestNodeClientFollowsARenewedCA(t *testing.T) {
	a, caA := nodeServer(t)
	b, caB := nodeServer(t)
	vol := fstest.NewSecretVolume(t, t.TempDir(), map[string]string{"ca.crt": caA})
	hc, err := nodeClient(t.Context(), filepath.Join(vol.Dir, "ca.crt"), "")
	if err != nil {
		t.Fatal(err)
	}
	get := func(srv *httptest.Server) error {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Close = true
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(a); err != nil {
		t.Fatalf("node A with A's CA: %v", err)
	}
	if err := get(b); err == nil {
		t.Fatal("node B was trusted with A's CA")
	}
	vol.Write(map[string]string{"ca.crt": caB})
	deadline := time.Now().Add(30 * time.Second)
	for get(b) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("node B still not trusted 30 s after the CA file changed to B's: %v", get(b))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := get(a); err == nil {
		t.Fatal("node A is still trusted after the CA file changed to B's")
	}
	vol.Write(map[string]string{"ca.crt": "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"})
	for i := range 10 {
		if err := get(b); err != nil {
			t.Fatalf("request %d after a broken CA bundle was written: %v (want B's CA kept)", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
