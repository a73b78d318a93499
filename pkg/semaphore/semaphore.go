package semaphore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
)

// Config describes the semaphore.
type Config struct {
	// Namespace of the Lease objects (required).
	Namespace string
	// Prefix of the Lease names (required), e.g. "keeplog-upload".
	Prefix string
	// Slots is the number of holders allowed at once (>= 1).
	Slots int
	// Single names the one slot's Lease Prefix itself rather than "<Prefix>-0" (Slots must be 1): a leader
	// election's Lease.
	Single bool
	// Holder is written as holderIdentity (the node name; required).
	Holder string
	// LeaseDuration after the last renewal at which a slot counts as free.
	// 30s.
	LeaseDuration time.Duration
	// RenewInterval between renewals while held. LeaseDuration/3.
	RenewInterval time.Duration
	// RetryInterval between attempts while all slots are taken (with
	// jitter). 2s.
	RetryInterval time.Duration
}

// Semaphore is safe for concurrent use. Its Acquire method matches
// archiver.Semaphore.
type Semaphore struct {
	cfg    Config
	leases Leases
	clk    clock.Clock

	mu   sync.Mutex
	held map[string]bool // slots held by this process
}

// Leases reads and writes the Leases of the semaphore's namespace.
type Leases interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error)
	Create(ctx context.Context, lease *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error)
	Update(ctx context.Context, lease *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error)
}

// New checks cfg. leases is the Lease client of cfg.Namespace; clk may be
// nil (real clock).
func New(leases Leases, cfg Config, clk clock.Clock) (*Semaphore, error) {
	var errs []error
	if leases == nil {
		errs = append(errs, errors.New("leases client: required"))
	}
	if cfg.Namespace == "" {
		errs = append(errs, errors.New("namespace: required"))
	}
	if cfg.Prefix == "" {
		errs = append(errs, errors.New("prefix: required"))
	}
	if cfg.Holder == "" {
		errs = append(errs, errors.New("holder: required"))
	}
	if cfg.Slots < 1 {
		errs = append(errs, fmt.Errorf("slots %d: must be at least 1", cfg.Slots))
	}
	if cfg.Single && cfg.Slots != 1 {
		errs = append(errs, fmt.Errorf("slots %d: a single Lease is one slot", cfg.Slots))
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = 30 * time.Second
	}
	if cfg.LeaseDuration < time.Second {
		errs = append(errs, fmt.Errorf("leaseDuration %v: must be at least 1s", cfg.LeaseDuration))
	}
	if cfg.RenewInterval == 0 {
		cfg.RenewInterval = cfg.LeaseDuration / 3
	}
	if cfg.RenewInterval <= 0 || cfg.RenewInterval >= cfg.LeaseDuration {
		errs = append(errs, fmt.Errorf("renewInterval %v: must be positive and below leaseDuration %v", cfg.RenewInterval, cfg.LeaseDuration))
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 2 * time.Second
	}
	if cfg.RetryInterval < 0 {
		errs = append(errs, fmt.Errorf("retryInterval %v: must not be negative", cfg.RetryInterval))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("lease semaphore: %w", errors.Join(errs...))
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Semaphore{cfg: cfg, leases: leases, clk: clk, held: map[string]bool{}}, nil
}

// Name of slot i's Lease.
func (s *Semaphore) Name(i int) string {
	if s.cfg.Single {
		return s.cfg.Prefix
	}
	return s.cfg.Prefix + "-" + strconv.Itoa(i)
}

// Acquire blocks until this process holds a slot or ctx ends. The returned
// context is cancelled when the slot is lost (renewal failed until the lease
// could have expired, or someone else holds it) or released; release frees
// the slot (idempotent). The slot lives within ctx: the returned context
// derives from it and the renewals stop when ctx ends.
func (s *Semaphore) Acquire(ctx context.Context) (context.Context, func(), error) {
	return s.AcquireWithin(ctx, 0)
}

// AcquireWithin is Acquire that gives up after waiting maxWait (0: no
// limit). The wait bound is kept apart from ctx, so a slot obtained just as
// the wait runs out is still held for the life of ctx (a context with a
// timeout for the wait would cancel the slot too).
func (s *Semaphore) AcquireWithin(ctx context.Context, maxWait time.Duration) (context.Context, func(), error) {
	deadline := s.clk.Now().Add(maxWait)
	for {
		start := rand.IntN(s.cfg.Slots) // spread holders over the slots
		for k := 0; k < s.cfg.Slots; k++ {
			name := s.Name((start + k) % s.cfg.Slots)
			lease, err := s.tryAcquire(ctx, name)
			if err != nil {
				if ctx.Err() != nil {
					return nil, nil, context.Cause(ctx)
				}
				continue // conflict or API error: try the next slot
			}
			if lease != nil {
				return s.hold(ctx, name, lease)
			}
		}
		wait := s.cfg.RetryInterval/2 + time.Duration(rand.Int64N(int64(s.cfg.RetryInterval)+1))
		if maxWait > 0 {
			left := deadline.Sub(s.clk.Now())
			if left <= 0 {
				return nil, nil, fmt.Errorf("all %d slots taken (Leases %s-*) for %s", s.cfg.Slots, s.cfg.Prefix, maxWait)
			}
			wait = min(wait, left)
		}
		select {
		case <-ctx.Done():
			return nil, nil, context.Cause(ctx)
		case <-s.clk.After(wait):
		}
	}
}

// free reports whether a lease can be taken at now.
func (s *Semaphore) free(l *coordinationv1.Lease, now time.Time) bool {
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
		return true
	}
	renew := l.Spec.RenewTime
	if renew == nil {
		renew = l.Spec.AcquireTime
	}
	if renew == nil {
		return true
	}
	d := s.cfg.LeaseDuration
	if l.Spec.LeaseDurationSeconds != nil {
		d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return now.After(renew.Add(d))
}

// tryAcquire returns the lease if it took it, nil if it is taken.
func (s *Semaphore) tryAcquire(ctx context.Context, name string) (*coordinationv1.Lease, error) {
	s.mu.Lock()
	mine := s.held[name]
	s.mu.Unlock()
	if mine {
		return nil, nil
	}
	api := s.leases
	now := s.clk.Now()
	secs := int32((s.cfg.LeaseDuration + time.Second - 1) / time.Second)
	holder := s.cfg.Holder
	mt := metav1.NewMicroTime(now)
	cur, err := api.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.cfg.Namespace,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "keeplog", "keeplog.io/semaphore": s.cfg.Prefix}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, AcquireTime: &mt, RenewTime: &mt},
		}
		created, err := api.Create(ctx, l, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("create lease %s/%s: %w", s.cfg.Namespace, name, err)
		}
		return created, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get lease %s/%s: %w", s.cfg.Namespace, name, err)
	}
	if !s.free(cur, now) {
		return nil, nil
	}
	l := cur.DeepCopy()
	prev := l.Spec.HolderIdentity
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.AcquireTime, l.Spec.RenewTime = &holder, &secs, &mt, &mt
	if prev != nil && *prev != "" {
		n := int32(1)
		if l.Spec.LeaseTransitions != nil {
			n = *l.Spec.LeaseTransitions + 1
		}
		l.Spec.LeaseTransitions = &n
	}
	// Update carries cur's resourceVersion: if anyone changed the lease
	// since we read it, the API server answers Conflict.
	updated, err := api.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("take lease %s/%s: %w", s.cfg.Namespace, name, err)
	}
	return updated, nil
}
