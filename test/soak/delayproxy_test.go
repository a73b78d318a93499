//go:build soak

package soak

import (
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// startDelayProxy listens on 127.0.0.1 and forwards every connection to host:port, each direction's bytes delayed
// by d: a link with a round trip of 2d and no bandwidth limit of its own, where what bounds an upload is how much
// its client keeps in flight (the SSH channel window, its outstanding SFTP requests) and how often it stops to
// wait. It returns the port; everything closes at the end of the benchmark.
func startDelayProxy(tb testing.TB, host string, port int, d time.Duration) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("delay proxy: %v", err)
	}
	target := net.JoinHostPort(host, strconv.Itoa(port))
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	tb.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				tb.Errorf("delay proxy: dial %s: %v", target, err)
				_ = c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			wg.Go(func() { delayed(c, u, d) })
			wg.Go(func() { delayed(u, c, d) })
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// segment is what one read from the sender got, and when the receiver may have it.
type segment struct {
	b  []byte
	at time.Time
}

// delayed copies src to dst, each read handed on d after it arrived; the queue between them is unbounded (a link
// holds what is in flight), so only the peers' own flow control limits the bytes in flight.
func delayed(src, dst net.Conn, d time.Duration) {
	q := make(chan segment, 1<<16)
	go func() {
		defer close(q)
		buf := make([]byte, 256<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				q <- segment{b: slices.Clone(buf[:n]), at: time.Now().Add(d)}
			}
			if err != nil {
				return
			}
		}
	}()
	for s := range q {
		time.Sleep(time.Until(s.at))
		if _, err := dst.Write(s.b); err != nil {
			_ = src.Close() // ends the reader; what it queued is dropped
			for range q {
			}
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite() // src ended: pass the end on
	}
}
