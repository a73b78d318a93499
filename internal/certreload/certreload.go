package certreload

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// DefaultInterval is how often at most the files are read again: a handshake costs no file read, and a rotation
// is served within seconds.
const DefaultInterval = 5 * time.Second

// Config names the files.
type Config struct {
	CertFile, KeyFile string
	// Interval between reads of the files (at handshakes); DefaultInterval when zero.
	Interval time.Duration
}

// Deps are a Pair's side effects.
type Deps struct {
	// Clock; the real clock when nil.
	Clock clock.PassiveClock
	// Log gets a line when a new pair is served and one when a changed pair cannot be loaded.
	Log logr.Logger
}

// Pair is a certificate and key read from files, read again when they change. Safe for concurrent use.
type Pair struct {
	cfg Config
	r   reloading[loaded]
}

// New reads the pair; it fails when the files do not hold a usable certificate and key.
func New(cfg Config, deps Deps) (*Pair, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("certreload: a certificate file and a key file are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	p := &Pair{cfg: cfg}
	p.r = reloading[loaded]{interval: cfg.Interval, clock: deps.Clock, read: p.read,
		changed: func(v loaded) {
			deps.Log.Info("Serving a new certificate", "certFile", cfg.CertFile, "certificate", describe(v.cert))
		},
		broken: func(err error, in loaded) {
			deps.Log.Error(err, "Cannot load the changed serving certificate; serving the previous one",
				"certFile", cfg.CertFile, "keyFile", cfg.KeyFile, "serving", describe(in.cert))
		},
		back: func(in loaded) {
			deps.Log.Info("The serving certificate files hold the served pair again", "certFile", cfg.CertFile,
				"certificate", describe(in.cert))
		}}
	if err := p.r.start(); err != nil {
		return nil, err
	}
	return p, nil
}

// loaded is a pair that loads: the parsed certificate and the files' content it was parsed from.
type loaded struct {
	cert            *tls.Certificate
	certPEM, keyPEM []byte
}

// GetCertificate is tls.Config's: the pair to serve, the files read again first when the interval has passed.
func (p *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return p.r.get().cert, nil
}

// Content is the served pair's certificate and key (PEM), the files read again first when the interval has passed,
// as GetCertificate does: for a server that takes the pair as content rather than through GetCertificate
// (k8s.io/apiserver's CertKeyContentProvider, keeplog-api). A pair that does not load is never returned.
func (p *Pair) Content() (certPEM, keyPEM []byte) {
	cur := p.r.get()
	return cur.certPEM, cur.keyPEM
}

// read reads both files and parses them. sum is the digest of their content, or of the error when one cannot be
// read, so that the same failure is recognised again.
func (p *Pair) read() (sum [32]byte, cur loaded, err error) {
	certPEM, err := os.ReadFile(p.cfg.CertFile)
	if err != nil {
		return sha256.Sum256([]byte(err.Error())), loaded{}, fmt.Errorf("read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(p.cfg.KeyFile)
	if err != nil {
		return sha256.Sum256([]byte(err.Error())), loaded{}, fmt.Errorf("read key: %w", err)
	}
	h := sha256.New()
	_, _ = fmt.Fprintf(h, "%d\x00", len(certPEM))
	h.Write(certPEM)
	h.Write(keyPEM)
	h.Sum(sum[:0])
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return sum, loaded{}, fmt.Errorf("certificate %s and key %s: %w", p.cfg.CertFile, p.cfg.KeyFile, err)
	}
	return sum, loaded{cert: &c, certPEM: certPEM, keyPEM: keyPEM}, nil
}

// describe names a certificate in the log: subject, serial and expiry, nothing secret.
func describe(c *tls.Certificate) string {
	if c == nil || c.Leaf == nil {
		return ""
	}
	return fmt.Sprintf("%s (serial %s, expires %s)", c.Leaf.Subject, c.Leaf.SerialNumber, c.Leaf.NotAfter.UTC().Format(time.RFC3339))
}
