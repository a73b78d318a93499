package archiver

import (
	"context"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// queue holds item IDs with the time they are due.
type queue struct {
	clk    clock.Clock
	mu     sync.Mutex
	due    map[string]time.Time
	notify chan struct{}
}

func newQueue(clk clock.Clock) *queue {
	return &queue{clk: clk, due: map[string]time.Time{}, notify: make(chan struct{})}
}

func (q *queue) add(id string, at time.Time) {
	q.mu.Lock()
	q.due[id] = at
	old := q.notify
	q.notify = make(chan struct{})
	q.mu.Unlock()
	close(old)
}

func (q *queue) hasDue() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.clk.Now()
	for _, t := range q.due {
		if !t.After(now) {
			return true
		}
	}
	return false
}

// next blocks until an item is due (FIFO by due time) or ctx ends.
func (q *queue) next(ctx context.Context) (string, bool) {
	for {
		q.mu.Lock()
		var best string
		var bestT time.Time
		for id, t := range q.due {
			if best == "" || t.Before(bestT) || (t.Equal(bestT) && id < best) {
				best, bestT = id, t
			}
		}
		now := q.clk.Now()
		if best != "" && !bestT.After(now) {
			delete(q.due, best)
			q.mu.Unlock()
			return best, true
		}
		notify := q.notify
		q.mu.Unlock()
		var timer <-chan time.Time
		if best != "" {
			timer = q.clk.After(bestT.Sub(now))
		}
		select {
		case <-ctx.Done():
			return "", false
		case <-notify:
		case <-timer:
		}
	}
}
