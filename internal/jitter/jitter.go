package jitter

import (
	"hash/fnv"
	"time"
)

// Offset is key's own offset in [0, d): the same for the same key at every call, spread evenly over [0, d) across
// keys. It is 0 when d <= 0.
func Offset(key string, d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(key)) // a hash.Hash's Write never fails
	return time.Duration(h.Sum64() % uint64(d))
}
