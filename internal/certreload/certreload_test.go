package certreload

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keeplog/keeplog/internal/certtest"
	"github.com/keeplog/keeplog/internal/fstest"
)

// pair is a self-signed certificate for 127.0.0.1 and its key, in PEM.
type pair struct {
	cert    *x509.Certificate
	certPEM []byte
	keyPEM  []byte
}

func newPair(t *testing.T, serial int64) pair {
	t.Helper()
	cert, certPEM, keyPEM := certtest.SelfSigned(t, serial)
	return pair{cert: cert, certPEM: certPEM, keyPEM: keyPEM}
}

// tlsFiles is a kubernetes.io/tls Secret's keys.
func tlsFiles(certPEM, keyPEM []byte) map[string]string {
	return map[string]string{"tls.crt": string(certPEM), "tls.key": string(keyPEM)}
}

// serve answers TLS handshakes with cfg on a loopback port until the test ends, and returns its address.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			_ = c.Close()
		}
	}()
	return l.Addr().String()
}

// served makes a verified handshake (trusting roots) and returns the serial of the certificate the server sent.
func served(t *testing.T, addr string, roots *x509.CertPool) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestPairFollowsASecretVolume: real handshakes against a server whose GetCertificate is a Pair over a kubelet-style
// Secret volume. It serves A; after the volume's ..data is swapped to B it still serves A until the interval passed,
// then B; a broken rotation (B's successor's certificate with another key: a half-written update) keeps B served and
// is logged once however many handshakes see it; the fixed rotation is served. Broken again, then back to the served
// pair: one more error line, and one line saying the files hold the served pair again.
func TestPairFollowsASecretVolume(t *testing.T) {
	a, b, c, other := newPair(t, 1), newPair(t, 2), newPair(t, 3), newPair(t, 4)
	roots := x509.NewCertPool()
	for _, p := range []pair{a, b, c, other} {
		roots.AddCert(p.cert)
	}
	vol := fstest.NewSecretVolume(t, t.TempDir(), tlsFiles(a.certPEM, a.keyPEM))
	clk := clocktesting.NewFakePassiveClock(time.Unix(1700000000, 0))
	var mu sync.Mutex
	var errorsLogged []string
	recovered := 0
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		if strings.Contains(args, `"error"=`) {
			errorsLogged = append(errorsLogged, args)
		}
		if strings.Contains(args, "hold the served pair again") {
			recovered++
		}
	}, funcr.Options{})
	logged := func() int { mu.Lock(); defer mu.Unlock(); return len(errorsLogged) }
	recoveries := func() int { mu.Lock(); defer mu.Unlock(); return recovered }
	p, err := New(Config{CertFile: filepath.Join(vol.Dir, "tls.crt"), KeyFile: filepath.Join(vol.Dir, "tls.key")},
		Deps{Clock: clk, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: p.GetCertificate})
	step := func() { clk.SetTime(clk.Now().Add(DefaultInterval)) }

	if got := served(t, addr, roots); got != 1 {
		t.Fatalf("serves %d, want A (1)", got)
	}
	vol.Write(tlsFiles(b.certPEM, b.keyPEM))
	if got := served(t, addr, roots); got != 1 {
		t.Fatalf("serves %d before the interval passed, want A (1): the files are not read at every handshake", got)
	}
	step()
	if got := served(t, addr, roots); got != 2 {
		t.Fatalf("serves %d after the swap to B and the interval, want B (2)", got)
	}

	vol.Write(tlsFiles(c.certPEM, other.keyPEM)) // a certificate and a key that do not go together
	for range 3 {
		step()
		if got := served(t, addr, roots); got != 2 {
			t.Fatalf("serves %d with a broken pair in the files, want the previous one, B (2)", got)
		}
	}
	if n := logged(); n != 1 {
		t.Fatalf("%d error lines for the broken pair, want 1: %q", n, errorsLogged)
	}
	if !strings.Contains(errorsLogged[0], "private key does not match public key") {
		t.Errorf("the error line does not say what is wrong: %s", errorsLogged[0])
	}

	vol.Write(tlsFiles(c.certPEM, c.keyPEM))
	step()
	if got := served(t, addr, roots); got != 3 {
		t.Fatalf("serves %d after the rotation was completed, want C (3)", got)
	}
	if n := logged(); n != 1 {
		t.Fatalf("%d error lines, want still 1", n)
	}

	vol.Write(tlsFiles(c.certPEM, other.keyPEM))
	step()
	served(t, addr, roots)
	vol.Write(tlsFiles(c.certPEM, c.keyPEM))
	for range 3 {
		step()
		if got := served(t, addr, roots); got != 3 {
			t.Fatalf("serves %d with C back in the files, want C (3)", got)
		}
	}
	if n, r := logged(), recoveries(); n != 2 || r != 1 {
		t.Fatalf("broken again, then C back: %d error lines in all and %d recovery lines, want 2 and 1", n, r)
	}
}

// TestNewCARefusesABrokenBundle: at start there is no previous bundle to fall back to.
func TestNewCARefusesABrokenBundle(t *testing.T) {
	a := newPair(t, 1)
	vol := fstest.NewSecretVolume(t, t.TempDir(), map[string]string{"ca.crt": string(a.certPEM), "bad.crt": "not PEM"})
	if _, err := NewCA(CAConfig{File: filepath.Join(vol.Dir, "ca.crt")}, Deps{}); err != nil {
		t.Fatalf("a bundle of one certificate: %v", err)
	}
	for _, f := range []string{"bad.crt", "none.crt"} {
		if _, err := NewCA(CAConfig{File: filepath.Join(vol.Dir, f)}, Deps{}); err == nil {
			t.Errorf("CA file %s was accepted", f)
		}
	}
}

// TestNewRefusesABrokenPair: at start there is no previous pair to fall back to.
func TestNewRefusesABrokenPair(t *testing.T) {
	a, b := newPair(t, 1), newPair(t, 2)
	vol := fstest.NewSecretVolume(t, t.TempDir(), tlsFiles(a.certPEM, b.keyPEM))
	if _, err := New(Config{CertFile: filepath.Join(vol.Dir, "tls.crt"), KeyFile: filepath.Join(vol.Dir, "tls.key")}, Deps{}); err == nil {
		t.Fatal("a certificate with another certificate's key was accepted")
	}
	if _, err := New(Config{CertFile: filepath.Join(vol.Dir, "none.crt"), KeyFile: filepath.Join(vol.Dir, "tls.key")}, Deps{}); err == nil {
		t.Fatal("a missing certificate file was accepted")
	}
}
