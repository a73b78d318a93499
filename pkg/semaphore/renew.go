package semaphore

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// holding is one held slot: the last Lease written, read by release once the renewer has stopped.
type holding struct {
	name string
	mu   sync.Mutex
	last *coordinationv1.Lease
}

func (h *holding) get() *coordinationv1.Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last.DeepCopy()
}

func (h *holding) set(l *coordinationv1.Lease) {
	h.mu.Lock()
	h.last = l
	h.mu.Unlock()
}

// hold starts renewing a taken lease.
func (s *Semaphore) hold(ctx context.Context, name string, lease *coordinationv1.Lease) (context.Context, func(), error) {
	s.mu.Lock()
	s.held[name] = true
	s.mu.Unlock()
	held, lose := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	done := make(chan struct{})
	h := &holding{name: name, last: lease}
	go func() {
		defer close(done)
		s.renew(held, lose, stop, h)
	}()
	var once sync.Once
	release := func() {
		once.Do(func() {
			close(stop)
			<-done
			lost := held.Err() != nil && context.Cause(held) != context.Canceled && ctx.Err() == nil
			lose(context.Canceled)
			if !lost {
				l := h.get()
				l.Spec.HolderIdentity = nil
				l.Spec.AcquireTime, l.Spec.RenewTime = nil, nil
				rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				// A conflict means someone else has it now: nothing to do.
				_, _ = s.leases.Update(rctx, l, metav1.UpdateOptions{})
				cancel()
			}
			s.mu.Lock()
			delete(s.held, name)
			s.mu.Unlock()
		})
	}
	return held, release, nil
}

// lostAfter is how long after its last successful renewal a holder counts its slot as lost: LeaseDuration less
// RenewInterval, the time a contender still waits; less half the time from one renewal's attempt to the lease's
// expiry when RenewInterval is longer than that, so that the attempt gets a chance.
func (s *Semaphore) lostAfter() time.Duration {
	return s.cfg.LeaseDuration - min(s.cfg.RenewInterval, (s.cfg.LeaseDuration-s.cfg.RenewInterval)/2)
}

// renew renews the held lease every RenewInterval until stop closes or held ends. A renewal that fails is retried
// after RetryInterval (at most RenewInterval). The slot is lost (lose) when someone else wrote the Lease, or when
// no renewal has succeeded for lostAfter: at that moment, even while a renewal is still in flight (each one is
// bounded by the time left: an API server behind a partition may hold a request for longer than any of these
// intervals), so that the holder stops before a contender, which waits LeaseDuration after the last renewal, can
// take the slot.
func (s *Semaphore) renew(held context.Context, lose context.CancelCauseFunc, stop <-chan struct{}, h *holding) {
	lastOK := s.clk.Now()
	wait := s.cfg.RenewInterval
	retry := min(s.cfg.RetryInterval, s.cfg.RenewInterval)
	var failed error
	for {
		select {
		case <-stop:
			return
		case <-held.Done():
			return
		case <-s.clk.After(wait):
		}
		now := s.clk.Now()
		left := lastOK.Add(s.lostAfter()).Sub(now)
		if left <= 0 {
			lose(s.notRenewed(h.name, failed))
			return
		}
		updated, err := s.renewOnce(h.get(), now, min(left, s.cfg.RenewInterval))
		switch {
		case err == nil:
			h.set(updated)
			lastOK, wait, failed = now, s.cfg.RenewInterval, nil
		case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
			lose(fmt.Errorf("lease %s/%s lost: %w", s.cfg.Namespace, h.name, err))
			return
		default:
			// Keep trying while the lease is still ours for sure.
			failed = err
			left = lastOK.Add(s.lostAfter()).Sub(s.clk.Now())
			if left <= 0 {
				lose(s.notRenewed(h.name, failed))
				return
			}
			wait = min(retry, left)
		}
	}
}

// notRenewed is why a slot was given up after lostAfter without a renewal; failed is the last renewal's error
// (nil if none was tried).
func (s *Semaphore) notRenewed(name string, failed error) error {
	err := fmt.Errorf("lease %s/%s not renewed for %v", s.cfg.Namespace, name, s.lostAfter())
	if failed != nil {
		err = fmt.Errorf("%w: %w", err, failed)
	}
	return err
}

// renewOnce writes l with renew time now, giving up after limit. The bound is on the real clock (a request's
// context), which is the semaphore's own in production. A write that completes after renewOnce gave up leaves the
// Lease with a resourceVersion the holder does not know: its next renewal conflicts and the slot counts as lost,
// the safe side.
func (s *Semaphore) renewOnce(l *coordinationv1.Lease, now time.Time, limit time.Duration) (*coordinationv1.Lease, error) {
	mt := metav1.NewMicroTime(now)
	l.Spec.RenewTime = &mt
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	return s.leases.Update(ctx, l, metav1.UpdateOptions{})
}
