package certreload

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/utils/clock"
)

// CAConfig names a CA bundle file.
type CAConfig struct {
	File string
	// Interval between reads of the file (at connections); DefaultInterval when zero.
	Interval time.Duration
}

// CA is a CA bundle (PEM) read from a file, read again when it changes: the pool a client verifies servers with.
// Safe for concurrent use.
type CA struct {
	cfg CAConfig
	r   reloading[*x509.CertPool]
}

// NewCA reads the bundle; it fails when the file does not hold at least one certificate, or holds one that does
// not parse.
func NewCA(cfg CAConfig, deps Deps) (*CA, error) {
	if cfg.File == "" {
		return nil, errors.New("certreload: a CA file is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	c := &CA{cfg: cfg}
	c.r = reloading[*x509.CertPool]{interval: cfg.Interval, clock: deps.Clock, read: c.read,
		changed: func(*x509.CertPool) { deps.Log.Info("Verifying with a new CA bundle", "file", cfg.File) },
		broken: func(err error, _ *x509.CertPool) {
			deps.Log.Error(err, "Cannot load the changed CA bundle; verifying with the previous one", "file", cfg.File)
		},
		back: func(*x509.CertPool) { deps.Log.Info("The CA file holds the bundle in use again", "file", cfg.File) }}
	if err := c.r.start(); err != nil {
		return nil, err
	}
	return c, nil
}

// Pool is the bundle to verify with now, the file read again first when the interval has passed. A file that does
// not load keeps the previous bundle; it is logged once for that content, and once when the file loads again.
func (c *CA) Pool() *x509.CertPool { return c.r.get() }

// read reads and parses the file; sum is the digest of its content, or of the error when it cannot be read.
func (c *CA) read() (sum [32]byte, pool *x509.CertPool, err error) {
	b, err := os.ReadFile(c.cfg.File)
	if err != nil {
		return sha256.Sum256([]byte(err.Error())), nil, fmt.Errorf("read CA bundle: %w", err)
	}
	sum = sha256.Sum256(b)
	if pool, err = certutil.NewPoolFromBytes(b); err != nil {
		return sum, nil, fmt.Errorf("CA bundle %s: %w", c.cfg.File, err)
	}
	return sum, pool, nil
}
