package archiver

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/utils/clock"
)

// retryEventInterval is how often a file that keeps failing with the same error sends its ArchiveRetrying Event
// again. The API server drops Events after its TTL (1 h by default): sent once, a target that stays broken (a full
// server, a wrong key) would vanish from the pod's Events while its uploads keep failing. So the Event goes out at
// a file's first failure, whenever its error says something new, and again each interval while it keeps failing,
// never more often for the same file and error (the backoff retries much more often than this at first).
const retryEventInterval = 30 * time.Minute

// retryEvents remembers, in memory, which (item, error) pairs sent their ArchiveRetrying Event within the last
// retryEventInterval: that is all the rule needs. A pair is sent when it is not remembered, and then remembered for
// the interval; an entry past the interval is dropped by the cache (at the next one it stores), so nothing needs to
// be forgotten when an item is done or failed (it fails no more) and memory holds no Event older than the interval
// before the latest one. The attempts and the last error are journalled; this is not: after a restart one more Event is sent,
// which is fine. Safe for concurrent use (every upload worker retries).
type retryEvents struct {
	mu   sync.Mutex // makes due's look-up and store one step
	sent *cache.Expiring
}

// retryEvent is what retryEvents remembers: an item and its error without request IDs (errorCause).
type retryEvent struct{ id, cause string }

func newRetryEvents(clk clock.Clock) *retryEvents {
	return &retryEvents{sent: cache.NewExpiringWithClock(clk)}
}

// due says whether an item's failure with this error sends an Event now, and if so records that it was sent.
func (r *retryEvents) due(id string, err error) bool {
	ev := retryEvent{id: id, cause: errorCause(err)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.sent.Get(ev); ok {
		return false
	}
	r.sent.Set(ev, struct{}{}, retryEventInterval)
	return true
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
