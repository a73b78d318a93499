package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keeplog/keeplog/internal/certreload"
	"github.com/keeplog/keeplog/internal/certtest"
	"github.com/keeplog/keeplog/internal/fstest"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns their paths and the certificate.
func selfSigned(t *testing.T) (string, string, *x509.Certificate) {
	t.Helper()
	cert, certPEM, keyPEM := certtest.SelfSigned(t, 1)
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(cf, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return cf, kf, cert
}

// TestServeRetrievalTLS: with a certificate the endpoint speaks only TLS (a plain-HTTP request is refused), and a
// client that trusts the certificate reaches the handler.
func TestServeRetrievalTLS(t *testing.T) {
	cf, kf, cert := selfSigned(t)
	pair, err := certreload.New(certreload.Config{CertFile: cf, KeyFile: kf}, certreload.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	addr := startRetrieval(t, cf, kf, pair)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var resp *http.Response
	for i := 0; i < 50; i++ {
		if resp, err = hc.Get("https://" + addr + "/retained/v1/pods"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTPS: %v %v", resp, err)
	}
	resp.Body.Close()
	if plain, err := http.Get("http://" + addr + "/retained/v1/pods"); err == nil {
		if plain.StatusCode == http.StatusOK {
			t.Error("plain HTTP was served")
		}
		plain.Body.Close()
	}
}

// startRetrieval serves the retrieval endpoint over TLS with pair (certFile and keyFile are the options' names of
// its files) on a free loopback port, answering "ok" to every request, until the test ends; it returns the address.
// Whether it started is the caller's first request to find out.
func startRetrieval(t *testing.T, certFile, keyFile string, pair *certreload.Pair) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serveRetrieval(ctx, RetrievalOptions{Address: addr, TLSCertFile: certFile, TLSKeyFile: keyFile, bytesPerSecond: 1, MaxStreams: 1},
			http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }), pair)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveRetrieval: %v", err)
		}
	})
	return addr
}

// pemFiles is a certificate file and a key file's content, as a Secret volume's keys.
func pemFiles(t *testing.T, certFile, keyFile string) map[string]string {
	t.Helper()
	kv := map[string]string{}
	for k, f := range map[string]string{"tls.crt": certFile, "tls.key": keyFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		kv[k] = string(b)
	}
	return kv
}

// TestServeRetrievalRotatedCertificate: the retrieval endpoint's certificate comes from a kubelet-style Secret
// volume (fstest.SecretVolume); after the Secret changes (..data swapped) and the reload interval passed, the next handshake gets the new
// certificate without a restart; a broken rotation (a certificate with another one's key) leaves the last good one
// served.
func TestServeRetrievalRotatedCertificate(t *testing.T) {
	cfA, kfA, certA := selfSigned(t)
	cfB, kfB, certB := selfSigned(t)
	cfC, _, certC := selfSigned(t)
	vol := fstest.NewSecretVolume(t, t.TempDir(), pemFiles(t, cfA, kfA))
	clk := clocktesting.NewFakePassiveClock(time.Now())
	cf, kf := filepath.Join(vol.Dir, "tls.crt"), filepath.Join(vol.Dir, "tls.key")
	pair, err := certreload.New(certreload.Config{CertFile: cf, KeyFile: kf}, certreload.Deps{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	addr := startRetrieval(t, cf, kf, pair)
	pool := x509.NewCertPool()
	for _, c := range []*x509.Certificate{certA, certB, certC} {
		pool.AddCert(c)
	}
	served := func() *x509.Certificate {
		t.Helper()
		var c *tls.Conn
		for i := 0; i < 50; i++ {
			if c, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	if !served().Equal(certA) {
		t.Fatal("the first certificate is not served")
	}
	vol.Write(pemFiles(t, cfB, kfB))
	clk.SetTime(clk.Now().Add(certreload.DefaultInterval))
	if !served().Equal(certB) {
		t.Fatal("the rotated certificate is not served after the reload interval")
	}
	vol.Write(pemFiles(t, cfC, kfB)) // half a rotation: C's certificate with B's key
	clk.SetTime(clk.Now().Add(certreload.DefaultInterval))
	if !served().Equal(certB) {
		t.Fatal("a broken rotation is served, or broke serving: want the last good certificate")
	}
}
