package archiver

import (
	"net"
	"sync"
)

// maxPending bounds what a coalescingConn holds that is not on the wire yet: about four of OpenSSH's 256 KiB SFTP
// writes. A writer beyond it waits (back-pressure, as on the socket itself).
const maxPending = 1 << 20

// coalescingConn is the SSH connection's socket with writes gathered: crypto/ssh writes (and flushes) every SSH
// packet on its own, and OpenSSH's channels take packets of at most 32 KiB, so an upload was one write(2) per 32 KiB
// — 32,768 per GiB, a quarter of an upload's CPU in the kernel's per-call cost. Write copies the packet and returns;
// one goroutine writes whatever has gathered while its previous write was in the kernel in a single write(2), as
// OpenSSH's own event loop does. Reads are the socket's. An error of a write is returned by the next Write (the
// SSH transport then fails, as it would on the socket's error).
type coalescingConn struct {
	net.Conn
	mu      sync.Mutex
	cond    *sync.Cond
	pending []byte
	spare   []byte
	err     error
	closed  bool
	done    chan struct{}
}

func newCoalescingConn(c net.Conn) *coalescingConn {
	w := &coalescingConn{Conn: c, done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	go w.flush()
	return w
}

// Write queues p for the socket.
func (w *coalescingConn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.pending) > 0 && len(w.pending)+len(p) > maxPending && w.err == nil && !w.closed {
		w.cond.Wait()
	}
	switch {
	case w.err != nil:
		return 0, w.err
	case w.closed:
		return 0, net.ErrClosed
	}
	w.pending = append(w.pending, p...)
	w.cond.Broadcast()
	return len(p), nil
}

// flush writes what gathered until the connection is closed or a write fails.
func (w *coalescingConn) flush() {
	defer close(w.done)
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for len(w.pending) == 0 && !w.closed {
			w.cond.Wait()
		}
		if len(w.pending) == 0 {
			return // closed, nothing left
		}
		out := w.pending
		w.pending = w.spare[:0]
		w.mu.Unlock()
		_, err := w.Conn.Write(out)
		w.mu.Lock()
		w.spare = out[:0]
		if err != nil {
			w.err, w.pending = err, nil
			w.cond.Broadcast()
			return
		}
		w.cond.Broadcast()
	}
}

// Close closes the socket (what is still queued is dropped: the connection is being given up) and waits for the
// writing goroutine to end.
func (w *coalescingConn) Close() error {
	w.mu.Lock()
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
	err := w.Conn.Close()
	<-w.done
	return err
}
