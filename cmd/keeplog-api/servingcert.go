package main

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"time"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/certreload"
)

// servingCert is keeplog-api's serving pair (--tls-cert-file, --tls-private-key-file) as k8s.io/apiserver's secure
// serving takes it, a dynamiccertificates.CertKeyContentProvider, over a certreload.Pair: the files are read again
// every interval and a changed pair that loads is handed to the serving controller, which applies it to the next
// handshake. apiserver's own file content (NewDynamicServingContentFromFiles) logs a pair that does not load at every
// retry of its work queue, a line every few seconds to minutes for as long as a broken Secret stays broken; a Pair
// logs it once per distinct content and once when the files load again, as the node plugin's pair and
// --node-ca-file do, and never hands out a pair that does not load (so the controller has nothing to retry).
type servingCert struct {
	pair  *certreload.Pair
	every time.Duration
	clk   clock.WithTicker

	mu              sync.Mutex
	certPEM, keyPEM []byte // what CurrentCertKeyContent answers: the pair last handed to the listeners
	listeners       []dynamiccertificates.Listener
}

// newServingCert reads the pair; it fails when the files do not hold a usable certificate and key. clk is the real
// clock when nil.
func newServingCert(cfg certreload.Config, deps certreload.Deps, clk clock.WithTicker) (*servingCert, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = certreload.DefaultInterval
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	if deps.Clock == nil {
		deps.Clock = clk
	}
	every := cfg.Interval
	cfg.Interval = time.Nanosecond // Run's ticker paces the reads: the Pair reads the files at every Content
	p, err := certreload.New(cfg, deps)
	if err != nil {
		return nil, err
	}
	s := &servingCert{pair: p, every: every, clk: clk}
	s.certPEM, s.keyPEM = p.Content()
	return s, nil
}

// Name names the pair in apiserver's log lines.
func (s *servingCert) Name() string { return "serving-cert" }

// CurrentCertKeyContent is the pair to serve.
func (s *servingCert) CurrentCertKeyContent() (certPEM, keyPEM []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.certPEM, s.keyPEM
}

// AddListener registers the serving controller, told when the pair changed.
func (s *servingCert) AddListener(l dynamiccertificates.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, l)
}

// RunOnce reads the files once (SecureServingInfo.Serve calls it before Run).
func (s *servingCert) RunOnce(context.Context) error {
	s.check()
	return nil
}

// Run reads the files every interval until ctx ends (dynamiccertificates.ControllerRunner, with RunOnce: Serve
// starts both; without them the pair would never be read again, which TestServingCertificateFollowsTheSecret sees).
func (s *servingCert) Run(ctx context.Context, _ int) {
	t := s.clk.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			s.check()
		}
	}
}

// check tells the listeners when the Pair serves another pair.
func (s *servingCert) check() {
	certPEM, keyPEM := s.pair.Content()
	s.mu.Lock()
	changed := !bytes.Equal(certPEM, s.certPEM) || !bytes.Equal(keyPEM, s.keyPEM)
	s.certPEM, s.keyPEM = certPEM, keyPEM
	listeners := slices.Clone(s.listeners)
	s.mu.Unlock()
	if !changed {
		return
	}
	for _, l := range listeners {
		l.Enqueue()
	}
}
