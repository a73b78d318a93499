package main

import (
	"crypto/tls"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keeplog/keeplog/internal/certreload"
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
		hc, err := nodeClient(tc.ca, tc.name, certreload.Deps{})
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
	if _, err := nodeClient(filepath.Join(t.TempDir(), "none"), "", certreload.Deps{}); err == nil {
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
// is changed to B's CA, new connections trust B and no longer A once the reload interval passed, without a new
// client (no restart). A bundle that does not parse keeps B trusted and is logged once however many connections
// read it again; the file back to B's bundle is logged once; another broken bundle once more. Every request is a new
// connection (no kept-alive one hides the change).
func TestNodeClientFollowsARenewedCA(t *testing.T) {
	a, caA := nodeServer(t)
	b, caB := nodeServer(t)
	vol := fstest.NewSecretVolume(t, t.TempDir(), map[string]string{"ca.crt": caA})
	clk := clocktesting.NewFakePassiveClock(time.Unix(1700000000, 0))
	log := &lines{}
	hc, err := nodeClient(filepath.Join(vol.Dir, "ca.crt"), "", certreload.Deps{Clock: clk, Log: funcr.New(log.add, funcr.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	step := func() { clk.SetTime(clk.Now().Add(certreload.DefaultInterval)) }
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
	if err := get(b); err == nil {
		t.Fatal("node B trusted before the reload interval passed: the file is read at every connection")
	}
	step()
	if err := get(b); err != nil {
		t.Fatalf("node B not trusted after the CA file changed to B's and the interval passed: %v", err)
	}
	if err := get(a); err == nil {
		t.Fatal("node A is still trusted after the CA file changed to B's")
	}

	broken := func(body string) {
		t.Helper()
		vol.Write(map[string]string{"ca.crt": "-----BEGIN CERTIFICATE-----\n" + body + "\n-----END CERTIFICATE-----\n"})
		for i := range 10 {
			step()
			if err := get(b); err != nil {
				t.Fatalf("request %d after a broken CA bundle was written: %v (want B's CA kept)", i, err)
			}
		}
	}
	broken("not base64")
	if errs, infos := log.count(); errs != 1 || infos != 1 {
		t.Fatalf("a broken bundle read 10 times: %d error and %d info lines, want 1 and 1 (B's bundle loaded): %q", errs, infos, log.all())
	}
	if got := log.all()[1]; !strings.Contains(got, "Cannot load the changed CA bundle") {
		t.Errorf("the error line does not say what is wrong: %s", got)
	}
	vol.Write(map[string]string{"ca.crt": caB})
	for range 3 {
		step()
		if err := get(b); err != nil {
			t.Fatalf("node B with B's bundle back: %v", err)
		}
	}
	if errs, infos := log.count(); errs != 1 || infos != 2 || !strings.Contains(log.all()[2], "holds the bundle in use again") {
		t.Fatalf("B's bundle back: %d error and %d info lines, want 1 and 2 (the recovery once): %q", errs, infos, log.all())
	}
	broken("still not base64")
	if errs, _ := log.count(); errs != 2 {
		t.Fatalf("another broken bundle: %d error lines in all, want 2: %q", errs, log.all())
	}
}

// lines collects a funcr logger's lines; safe for concurrent use.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) add(_, args string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.l = append(l.l, args)
}

func (l *lines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.l...)
}

// count is the number of error lines (those with an error) and of the others.
func (l *lines) count() (errs, infos int) {
	for _, s := range l.all() {
		if strings.Contains(s, `"error"=`) {
			errs++
		} else {
			infos++
		}
	}
	return errs, infos
}
