package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/keeplog/keeplog/internal/fstest"
)

// TestServingCertificateFollowsTheSecret: keeplog-api's serving certificate (--tls-cert-file and
// --tls-private-key-file, in a kubelet-style Secret volume) changed in the Secret is served at a later handshake
// without a restart (k8s.io/apiserver watches the files), and a pair that does not load keeps the last good one.
func TestServingCertificateFollowsTheSecret(t *testing.T) {
	certA, keyA := selfSigned(t)
	certB, keyB := selfSigned(t)
	certC, _ := selfSigned(t)
	vol := fstest.NewSecretVolume(t, t.TempDir(), map[string]string{"tls.crt": certA, "tls.key": keyA})
	o := newOptions()
	o.Serving.ServerCert.CertKey.CertFile = filepath.Join(vol.Dir, "tls.crt")
	o.Serving.ServerCert.CertKey.KeyFile = filepath.Join(vol.Dir, "tls.key")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.Serving.Listener = l
	serving, err := o.secureServing()
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
	if served() != certA {
		t.Fatal("the first certificate is not served")
	}
	vol.Write(map[string]string{"tls.crt": certB, "tls.key": keyB})
	deadline := time.Now().Add(30 * time.Second)
	for served() != certB {
		if time.Now().After(deadline) {
			t.Fatal("the new certificate is not served 30 s after the Secret changed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	vol.Write(map[string]string{"tls.crt": certC, "tls.key": keyB}) // C's certificate with B's key
	for i := range 10 {
		if served() != certB {
			t.Fatalf("handshake %d after a broken pair was written: not the last good certificate", i)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
