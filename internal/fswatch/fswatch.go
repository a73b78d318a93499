package fswatch

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/liveness"
)

// MaxPendingNames bounds the names the reader holds for the consumer; past it, the names are dropped and the
// consumer rescans instead (as after a kernel queue overflow).
const MaxPendingNames = 1 << 16

// Coalesce is how long the reader lets events queue in the kernel after the first one before it reads them: what a
// consumer sees is at most this much later, and a node writing all the time wakes the reader ten times a second. The
// kernel's queue (fs.inotify.max_queued_events, 16384 by default) holds what arrives meanwhile; past it, an overflow.
const Coalesce = 100 * time.Millisecond

// ErrNotWatched is Remove's answer for a path that has no watch (never added, or its watch is gone with it).
var ErrNotWatched = errors.New("fswatch: path is not watched")

// Watcher is an inotify watcher whose events are always read. Create it with New; Ready signals that a batch
// waits; Take returns it.
type Watcher struct {
	fd     int           // the inotify descriptor; -1 once closed
	wake   int           // an eventfd that wakes the reader to stop
	ready  chan struct{} // one token while names, an overflow or an error wait
	done   chan struct{} // closed when the reader returned
	stop   chan struct{} // closed by Close
	closed sync.Once

	mu       sync.Mutex
	watches  map[int32]*watch  // by watch descriptor
	paths    map[string]*watch // by path
	names    map[string]int    // index in order and ops
	order    []string
	ops      []Op
	overflow bool
	errs     int
	lastErr  error
}

// Batch is what the reader collected since the consumer last looked.
type Batch struct {
	Names []string // changed paths, in first-seen order, each once
	// Ops are what happened to each of Names (the union of its events' ops): a consumer may skip a name that was
	// only written to (Write: a file's content, never a directory's entries) without a syscall.
	Ops      []Op
	Overflow bool // events were lost: rescan
	Errs     int  // other watch errors (events were not lost)
	LastErr  error
}

// New starts a watcher and its reader, which records progress on progress (nil: none) at each read and at least
// every progress.Heartbeat() while idle. clk is unused: the reader's pauses are real time (a consumer's fake clock
// must not stop its events).
func New(_ clock.Clock, progress *liveness.Loop) (*Watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("start file watcher: inotify_init1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("start file watcher: eventfd: %w", err)
	}
	w := &Watcher{fd: fd, wake: wake, ready: make(chan struct{}, 1), done: make(chan struct{}), stop: make(chan struct{}),
		watches: map[int32]*watch{}, paths: map[string]*watch{}, names: map[string]int{}}
	go w.read(progress)
	return w, nil
}

func (w *Watcher) add(name string, op Op) {
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
}

func (w *Watcher) fail(err error) {
	w.errs++
	w.lastErr = err
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

// Close stops the reader, waits for it and closes the descriptors (every watch goes with them).
func (w *Watcher) Close() {
	w.closed.Do(func() {
		close(w.stop)
		one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
		_, _ = unix.Write(w.wake, one)
		<-w.done
		w.mu.Lock()
		_ = unix.Close(w.fd)
		_ = unix.Close(w.wake)
		w.fd = -1
		w.mu.Unlock()
	})
}
