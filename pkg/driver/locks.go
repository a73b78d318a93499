package driver

import "sync"

// keyLocks gives at most one in-flight operation per key (a volume ID or a target path). A second caller is not queued:
// it gets false and answers Aborted, as the CSI spec asks, so the CO retries with backoff instead of piling up calls.
type keyLocks struct {
	mu   sync.Mutex
	held map[string]struct{}
}

func newKeyLocks() *keyLocks { return &keyLocks{held: map[string]struct{}{}} }

// tryLock takes every key or none of them (a publish holds its volume and its target path).
func (l *keyLocks) tryLock(keys ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if _, busy := l.held[k]; busy {
			return false
		}
	}
	for _, k := range keys {
		l.held[k] = struct{}{}
	}
	return true
}

func (l *keyLocks) unlock(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		delete(l.held, k)
	}
}
