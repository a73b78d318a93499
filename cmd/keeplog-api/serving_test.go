package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"k8s.io/klog/v2"

	"github.com/keeplog/keeplog/internal/certreload"
	"github.com/keeplog/keeplog/internal/fstest"
)

// TestServingCertificateFollowsTheSecret: keeplog-api's serving certificate (--tls-cert-file and
// --tls-private-key-file, in a kubelet-style Secret volume) changed in the Secret is served at a later handshake
// without a restart, and a pair that does not load keeps the last good one and is logged once however long it stays
// broken (k8s.io/apiserver's own file content logged it at every retry of its work queue: 9 lines in the 2 s below),
// and a completed rotation is served with no further error line. Real handshakes through k8s.io/apiserver's
// SecureServingInfo.Serve; the log is klog's (klogLines), where apiserver's lines and keeplog-api's go.
func TestServingCertificateFollowsTheSecret(t *testing.T) {
	broken := klogLines.since("private key does not match public key")
	brokenLines := func() int { return len(broken()) }

	certA, keyA := selfSigned(t)
	certB, keyB := selfSigned(t)
	certC, keyC := selfSigned(t)
	vol := fstest.NewSecretVolume(t, t.TempDir(), map[string]string{"tls.crt": certA, "tls.key": keyA})
	o := newOptions()
	o.Serving.ServerCert.CertKey.CertFile = filepath.Join(vol.Dir, "tls.crt")
	o.Serving.ServerCert.CertKey.KeyFile = filepath.Join(vol.Dir, "tls.key")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.Serving.Listener = l
	serving, err := o.secureServing(certreload.Deps{Log: klog.Background()}, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	stopped, _, err := serving.Serve(http.NotFoundHandler(), time.Second, stop)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(stop); <-stopped })

	pool := x509.NewCertPool()
	for _, c := range []string{certA, certB, certC} {
		pool.AppendCertsFromPEM([]byte(c))
	}
	served := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.ConnectionState().PeerCertificates[0].Raw}))
	}
	waitFor := func(cert, what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for served() != cert {
			if time.Now().After(deadline) {
				t.Fatalf("%s is not served 30 s after the Secret changed", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if served() != certA {
		t.Fatal("the first certificate is not served")
	}
	vol.Write(map[string]string{"tls.crt": certB, "tls.key": keyB})
	waitFor(certB, "the new certificate B")

	vol.Write(map[string]string{"tls.crt": certC, "tls.key": keyB}) // C's certificate with B's key
	deadline := time.Now().Add(30 * time.Second)
	for brokenLines() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the broken pair is not logged 30 s after it was written")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 20 { // 2 s: 20 reads of the files
		if served() != certB {
			t.Fatalf("handshake %d after a broken pair was written: not the last good certificate", i)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := brokenLines(); n != 1 {
		t.Fatalf("%d error lines for the broken pair in 2 s, want 1: %q", n, broken())
	}
	vol.Write(map[string]string{"tls.crt": certC, "tls.key": keyC}) // the rotation completed
	waitFor(certC, "the completed rotation C")
	if n := brokenLines(); n != 1 {
		t.Fatalf("%d error lines for the broken pair, want still 1 after it was fixed: %q", n, broken())
	}
}

// klogLines is what klog logged in this test binary. klog's logger is process-wide and apiserver's goroutines log
// while they stop, after Serve's stop channel with nothing to wait for: it is set once, in TestMain, before any of
// them starts (set or cleared in a test, the race detector sees the race).
var klogLines = &lines{}

func TestMain(m *testing.M) {
	klog.SetLogger(funcr.New(klogLines.add, funcr.Options{}))
	os.Exit(m.Run())
}

// since returns a function listing the lines holding text logged from now on.
func (l *lines) since(text string) func() []string {
	l.mu.Lock()
	start := len(l.l)
	l.mu.Unlock()
	return func() []string {
		l.mu.Lock()
		defer l.mu.Unlock()
		var out []string
		for _, s := range l.l[start:] {
			if strings.Contains(s, text) {
				out = append(out, s)
			}
		}
		return out
	}
}
