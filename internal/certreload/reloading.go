package certreload

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// reloading is what a Pair and a CA share: a value parsed from files, read again when it is asked for and the
// interval has passed. A changed content that loads replaces the value; one that does not keeps the previous value
// and is reported once however often it is read again (another broken content once more), and the files holding the
// value in use again once. Safe for concurrent use.
type reloading[T any] struct {
	interval time.Duration
	clock    clock.PassiveClock
	// read reads and parses the files; sum is the digest of their content, or of the error when one cannot be
	// read, so that the same failure is recognised again.
	read    func() (sum [32]byte, v T, err error)
	changed func(v T)             // a new value is in use
	broken  func(err error, in T) // a changed content does not load; in is the value still in use
	back    func(in T)            // the files hold the value in use again, after a broken content

	mu      sync.Mutex
	cur     T
	sum     [32]byte  // digest of the content of cur
	failed  [32]byte  // digest of the content last found broken, while failing
	failing bool      // the files held a broken content at the last read
	checked time.Time // when the files were last read
}

// start reads the files the first time: an error when they do not load.
func (r *reloading[T]) start() error {
	sum, v, err := r.read()
	if err != nil {
		return err
	}
	r.cur, r.sum, r.checked = v, sum, r.clock.Now()
	return nil
}

// get is the value to use now, the files read again first when the interval has passed.
func (r *reloading[T]) get() T {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.clock.Now(); now.Sub(r.checked) >= r.interval || now.Before(r.checked) {
		r.checked = now
		r.reload()
	}
	return r.cur
}

func (r *reloading[T]) reload() {
	sum, v, err := r.read()
	switch {
	case sum == r.sum:
		if r.failing {
			r.failing = false
			r.back(r.cur)
		}
	case err != nil:
		if !r.failing || r.failed != sum {
			r.failed, r.failing = sum, true
			r.broken(err, r.cur)
		}
	default:
		r.cur, r.sum, r.failing = v, sum, false
		r.changed(v)
	}
}
