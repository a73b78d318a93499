package archiver

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// retryEventInterval is how often a file that keeps failing with the same error sends its ArchiveRetrying Event
// again. The API server drops Events after its TTL (1 h by default): sent once, a target that stays broken (a full
// server, a wrong key) would vanish from the pod's Events while its uploads keep failing. So the Event goes out at
// a file's first failure, whenever its error says something new, and again each interval while it keeps failing,
// never more often for the same file and error (the backoff retries much more often than this at first).
const retryEventInterval = 30 * time.Minute

// retryEventCauses bounds how many different errors of one file are remembered (an error flapping between a few
// causes is still sent at most once per interval each).
const retryEventCauses = 4

// retryEvents remembers, in memory, when each failing item last sent its ArchiveRetrying Event for each error. The
// attempts and the last error are journalled; this is not: after a restart one more Event is sent, which is fine.
// An entry older than the interval means the same as none, so such entries are swept when the map grows, and an
// item's entry goes when it is done or failed. Safe for concurrent use (every upload worker retries).
type retryEvents struct {
	mu    sync.Mutex
	last  map[string]map[string]time.Time // item ID → error (without request IDs) → when its Event was sent
	sweep int                             // the size at which entries past the interval are swept next
}

func newRetryEvents() *retryEvents {
	return &retryEvents{last: map[string]map[string]time.Time{}, sweep: 64}
}

// due says whether an item's failure with this error sends an Event now, and if so records that it was sent.
func (r *retryEvents) due(id string, err error, now time.Time) bool {
	cause := errorCause(err)
	r.mu.Lock()
	defer r.mu.Unlock()
	sent := r.last[id]
	if at, ok := sent[cause]; ok && now.Sub(at) < retryEventInterval && !now.Before(at) {
		return false
	}
	if sent == nil {
		r.sweepLocked(now)
		sent = map[string]time.Time{}
		r.last[id] = sent
	}
	if _, ok := sent[cause]; !ok && len(sent) >= retryEventCauses {
		oldestCause, oldest := "", now
		for c, at := range sent {
			if !at.After(oldest) {
				oldestCause, oldest = c, at
			}
		}
		delete(sent, oldestCause)
	}
	sent[cause] = now
	return true
}

// forget drops an item that is no longer retried (done, failed).
func (r *retryEvents) forget(id string) {
	r.mu.Lock()
	delete(r.last, id)
	r.mu.Unlock()
}

// sweepLocked drops the items whose every Event is past the interval, once the map reaches the sweep size; the
// next sweep is at twice what is left, so that the cost per failure stays constant.
func (r *retryEvents) sweepLocked(now time.Time) {
	if len(r.last) < r.sweep {
		return
	}
	for id, sent := range r.last {
		for c, at := range sent {
			if now.Sub(at) >= retryEventInterval {
				delete(sent, c)
			}
		}
		if len(sent) == 0 {
			delete(r.last, id)
		}
	}
	r.sweep = max(64, 2*len(r.last))
}

// errorCause is an error's text without what differs from one attempt to the next for the same cause: an S3
// server's request ID ("[request …]", s3errors.go).
func errorCause(err error) string {
	s := err.Error()
	for {
		i := strings.Index(s, "[request ")
		if i < 0 {
			return s
		}
		j := strings.IndexByte(s[i:], ']')
		if j < 0 {
			return strings.TrimRight(s[:i], " ")
		}
		s = strings.TrimRight(s[:i], " ") + s[i+j+1:]
	}
}

// retryingMessage is the ArchiveRetrying Event's text: after the first attempt it says how many failed and since
// when the file waits.
func retryingMessage(it Item, err error) string {
	if it.Attempts <= 1 {
		return fmt.Sprintf("%s: upload failed, retrying: %v", it.Rel, err)
	}
	return fmt.Sprintf("%s: upload failed, %d attempts since it was queued at %s, retrying: %v", it.Rel, it.Attempts,
		it.QueuedAt.UTC().Format(time.RFC3339), err)
}
