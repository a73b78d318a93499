package archiver

import (
	"errors"
	"fmt"
	"sync"

	"github.com/fsnotify/fsnotify"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/liveness"
)

// maxPendingNames bounds the names the drain goroutine holds for the main loop; past it, the names are dropped and
// the main loop rescans instead (as after a kernel queue overflow).
const maxPendingNames = 1 << 16

// watcher wraps fsnotify so that fsnotify never waits for the archiver. fsnotify (v1.10) sends on its unbuffered
// Errors channel while it holds the mutex that Add and Remove take (after IN_MOVE_SELF of a directory whose watch
// is already gone, which keeplog's own GC causes by renaming pod directories into its trash): a main loop that both
// reads Errors and calls Add deadlocks. Here one goroutine does nothing but drain Events and Errors into a set of
// changed names; the main loop takes them in batches, so Add and Remove never wait on the consumer. A kernel queue
// overflow (or too many pending names) is remembered as a flag: the main loop rescans, keeping what it knew.
//
// Watches are only added to directories found by a walk that never follows symlinks; a name only makes the archiver
// look at a path again (through podFS), it is never trusted by itself.
type watcher struct {
	w     *fsnotify.Watcher
	ready chan struct{} // one token while names, an overflow or an error wait
	done  chan struct{} // closed when the drain goroutine returned

	mu       sync.Mutex
	names    map[string]struct{}
	order    []string
	overflow bool
	errs     int
	lastErr  error
}

// watchBatch is what the drain goroutine collected since the main loop last looked.
type watchBatch struct {
	names    []string // changed paths, in first-seen order, each once
	overflow bool     // events were lost: rescan
	errs     int      // other watch errors (events were not lost)
	lastErr  error
}

func newWatcher(root string, clk clock.Clock, progress *liveness.Loop) (*watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("archiver: start file watcher: %w", err)
	}
	w := &watcher{w: fw, ready: make(chan struct{}, 1), done: make(chan struct{}), names: map[string]struct{}{}}
	go w.drain(clk, progress)
	if err := fw.Add(root); err != nil {
		w.close()
		return nil, fmt.Errorf("archiver: watch %s: %w", root, err)
	}
	return w, nil
}

// drain receives everything fsnotify sends until the watcher is closed. It never blocks on anything but fsnotify's
// channels, its own short mutex and the heartbeat.
func (w *watcher) drain(clk clock.Clock, progress *liveness.Loop) {
	defer close(w.done)
	hb := clk.After(progress.Heartbeat())
	for {
		select {
		case ev, ok := <-w.w.Events:
			if !ok {
				return
			}
			w.add(ev.Name)
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

func (w *watcher) add(name string) {
	w.mu.Lock()
	if _, ok := w.names[name]; !ok && !w.overflow {
		if len(w.order) >= maxPendingNames {
			w.overflow = true
		} else {
			w.names[name] = struct{}{}
			w.order = append(w.order, name)
		}
	}
	w.mu.Unlock()
	w.signal()
}

func (w *watcher) fail(err error) {
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

func (w *watcher) signal() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

// take returns and clears what was collected. After an overflow the names are dropped: the rescan sees everything.
func (w *watcher) take() watchBatch {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := watchBatch{names: w.order, overflow: w.overflow, errs: w.errs, lastErr: w.lastErr}
	if b.overflow {
		b.names = nil
	}
	w.names, w.order, w.overflow, w.errs, w.lastErr = map[string]struct{}{}, nil, false, 0, nil
	return b
}

// addWatch watches one more directory; it never waits for the main loop.
func (w *watcher) addWatch(path string) error { return w.w.Add(path) }

// close stops fsnotify and waits for the drain goroutine.
func (w *watcher) close() {
	_ = w.w.Close()
	<-w.done
}
