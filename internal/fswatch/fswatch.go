// Package fswatch wraps fsnotify so that fsnotify never waits for keeplog. fsnotify (v1.10) sends on its unbuffered
// Errors channel while it holds the mutex that Add and Remove take (after IN_MOVE_SELF of a directory whose watch
// is already gone, which keeplog's own garbage collector causes by renaming pod directories into its trash): a
// consumer that adds watches while it is also the one that must read Errors (or that holds a lock the reader needs)
// deadlocks. Here one goroutine does nothing but drain Events and Errors into a set of changed names under a short
// mutex of its own; the consumer takes them in batches, so Add and Remove never wait on it. A kernel queue overflow
// (or too many pending names) is remembered as a flag, so the consumer rescans instead of trusting what it lost.
package fswatch

import (
	"errors"
	"fmt"
	"sync"

	"github.com/fsnotify/fsnotify"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/liveness"
)

// MaxPendingNames bounds the names the drain goroutine holds for the main loop; past it, the names are dropped and
// the main loop rescans instead (as after a kernel queue overflow).
const MaxPendingNames = 1 << 16

// Watcher is an fsnotify watcher whose channels are always drained. Create it with New; Ready signals that a
// batch waits; Take returns it.
type Watcher struct {
	w     *fsnotify.Watcher
	ready chan struct{} // one token while names, an overflow or an error wait
	done  chan struct{} // closed when the drain goroutine returned

	mu       sync.Mutex
	names    map[string]int // index in order and ops
	order    []string
	ops      []fsnotify.Op
	overflow bool
	errs     int
	lastErr  error
}

// Batch is what the drain goroutine collected since the consumer last looked.
type Batch struct {
	Names []string // changed paths, in first-seen order, each once
	// Ops are what happened to each of Names (the union of its events' ops): a consumer may skip a name that was
	// only written to (fsnotify.Write: a file's content, never a directory's entries) without a syscall.
	Ops      []fsnotify.Op
	Overflow bool // events were lost: rescan
	Errs     int  // other watch errors (events were not lost)
	LastErr  error
}

// New starts a watcher and its drain goroutine, which records progress on progress (nil: none) at each event and
// on its heartbeat.
func New(clk clock.Clock, progress *liveness.Loop) (*Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("start file watcher: %w", err)
	}
	w := &Watcher{w: fw, ready: make(chan struct{}, 1), done: make(chan struct{}), names: map[string]int{}}
	go w.drain(clk, progress)
	return w, nil
}

// drain receives everything fsnotify sends until the watcher is closed. It never blocks on anything but fsnotify's
// channels, its own short mutex and the heartbeat.
func (w *Watcher) drain(clk clock.Clock, progress *liveness.Loop) {
	defer close(w.done)
	hb := clk.After(progress.Heartbeat())
	for {
		select {
		case ev, ok := <-w.w.Events:
			if !ok {
				return
			}
			w.add(ev.Name, ev.Op)
		case err, ok := <-w.w.Errors:
			if !ok {
				return
			}
			w.fail(err)
		case <-hb:
			hb = clk.After(progress.Heartbeat())
		}
		progress.Progress()
	}
}

func (w *Watcher) add(name string, op fsnotify.Op) {
	w.mu.Lock()
	if i, ok := w.names[name]; ok {
		w.ops[i] |= op
	} else if !w.overflow {
		if len(w.order) >= MaxPendingNames {
			w.overflow = true
		} else {
			w.names[name] = len(w.order)
			w.order = append(w.order, name)
			w.ops = append(w.ops, op)
		}
	}
	w.mu.Unlock()
	w.signal()
}

func (w *Watcher) fail(err error) {
	w.mu.Lock()
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		w.overflow = true
	} else {
		w.errs++
		w.lastErr = err
	}
	w.mu.Unlock()
	w.signal()
}

func (w *Watcher) signal() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

// Ready has a token while a batch waits.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Take returns and clears what was collected. After an overflow the names are dropped: the rescan sees everything.
func (w *Watcher) Take() Batch {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := Batch{Names: w.order, Ops: w.ops, Overflow: w.overflow, Errs: w.errs, LastErr: w.lastErr}
	if b.Overflow {
		b.Names, b.Ops = nil, nil
	}
	w.names, w.order, w.ops, w.overflow, w.errs, w.lastErr = map[string]int{}, nil, nil, false, 0, nil
	return b
}

// Add watches one more path; it never waits for the consumer.
func (w *Watcher) Add(path string) error { return w.w.Add(path) }

// Remove drops a watch; it never waits for the consumer.
func (w *Watcher) Remove(path string) error { return w.w.Remove(path) }

// WatchList returns the paths watched now (tests check what is, and is not, watched).
func (w *Watcher) WatchList() []string { return w.w.WatchList() }

// Close stops fsnotify and waits for the drain goroutine.
func (w *Watcher) Close() {
	_ = w.w.Close()
	<-w.done
}
