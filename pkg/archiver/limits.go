package archiver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Semaphore bounds concurrent uploads across the cluster. pkg/semaphore
// implements it with Kubernetes Leases; NewLocalSemaphore within a process.
type Semaphore interface {
	// Acquire blocks until a slot is held or ctx ends. The returned context
	// is cancelled when the slot is lost (it could not be renewed) or
	// released; release frees the slot and may be called more than once.
	Acquire(ctx context.Context) (held context.Context, release func(), err error)
}

// LocalSemaphore is an in-process Semaphore (tests, single-node setups).
type LocalSemaphore struct {
	slots chan struct{}
}

// NewLocalSemaphore allows n holders at a time.
func NewLocalSemaphore(n int) *LocalSemaphore {
	if n < 1 {
		n = 1
	}
	return &LocalSemaphore{slots: make(chan struct{}, n)}
}

// Acquire implements Semaphore.
func (s *LocalSemaphore) Acquire(ctx context.Context) (context.Context, func(), error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, context.Cause(ctx)
	}
	held, cancel := context.WithCancel(ctx)
	var once sync.Once
	return held, func() {
		once.Do(func() {
			cancel()
			<-s.slots
		})
	}, nil
}

// newLimiter returns a token bucket for bytesPerSecond (nil = unlimited).
// The burst is small compared with a second of traffic so that the achieved
// rate stays close to the limit even for short transfers.
func newLimiter(bytesPerSecond int64) *rate.Limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	burst := min(max(bytesPerSecond/50, 32<<10), 4<<20)
	return rate.NewLimiter(rate.Limit(bytesPerSecond), int(burst))
}

// backoff is the delay before retry number attempt (1-based): exponential
// from min to max with "equal jitter" (half fixed, half random).
func backoff(attempt int, minD, maxD time.Duration, rnd func() float64) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := float64(minD) * math.Pow(2, float64(attempt-1))
	if d > float64(maxD) || math.IsInf(d, 0) {
		d = float64(maxD)
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	return time.Duration(d/2 + rnd()*d/2)
}

// permanentError marks failures that retrying cannot fix: the local file is
// unreadable, gone, changed or not a regular file.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

func permanentf(format string, args ...any) error { return permanent(fmt.Errorf(format, args...)) }

func isPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}
