package store

import "sync"

// subscribers are told which volume's records changed. keeplog never watches its own records with inotify (an idle
// node plugin must do no work, and a watch per record directory is ~30,000 watches at 10,000 volumes): the one
// process that writes them says so instead. Guarded by its own mutex, so that Subscribe never waits for a record
// change under way.
type subscribers struct {
	mu   sync.Mutex
	next int
	fns  map[int]func(volumeID string)
}

// Subscribe registers fn to be called with a volume's ID after any of its records (volume.json, a pod directory's
// record, a target's) was written or removed by this Store, the volume's deletion included. fn is called with the
// store's lock held, in the order the changes were made: it must return at once (mark the volume, signal a channel
// without blocking) and must not call the Store. The returned function ends the subscription.
func (s *Store) Subscribe(fn func(volumeID string)) (cancel func()) {
	s.subs.mu.Lock()
	defer s.subs.mu.Unlock()
	if s.subs.fns == nil {
		s.subs.fns = map[int]func(string){}
	}
	id := s.subs.next
	s.subs.next++
	s.subs.fns[id] = fn
	return func() {
		s.subs.mu.Lock()
		defer s.subs.mu.Unlock()
		delete(s.subs.fns, id)
	}
}

// changed tells the subscribers that a volume's records changed.
func (s *Store) changed(volumeID string) {
	s.subs.mu.Lock()
	defer s.subs.mu.Unlock()
	for _, fn := range s.subs.fns {
		fn(volumeID)
	}
}
