package archiver

import (
	"bytes"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// tcpPair is a connected pair of real loopback TCP sockets.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestCoalescingConnGathersWritesInOrder: 4,096 packet-sized writes arrive whole and in order, in fewer write(2)
// calls than Writes while the reader is slower than the writer (the socket's buffer fills, writes gather).
func TestCoalescingConnGathersWritesInOrder(t *testing.T) {
	client, server := tcpPair(t)
	under := &countingConn{Conn: client}
	w := newCoalescingConn(under)
	const n, size = 4096, 32 << 10
	var want bytes.Buffer
	got := make(chan []byte, 1)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 64<<10)
		for b.Len() < n*size {
			k, err := server.Read(buf)
			b.Write(buf[:k])
			if err != nil {
				break
			}
			time.Sleep(50 * time.Microsecond) // a reader slower than the writer
		}
		got <- b.Bytes()
	}()
	pkt := make([]byte, size)
	for i := range n {
		for j := range pkt {
			pkt[j] = byte(i + j)
		}
		want.Write(pkt)
		if k, err := w.Write(pkt); err != nil || k != size {
			t.Fatalf("Write %d = %d, %v", i, k, err)
		}
	}
	b := <-got
	if !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("received %d bytes, not the %d written in order", len(b), want.Len())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	calls := under.writes.Load()
	t.Logf("%d Writes reached the socket in %d write calls", n, calls)
	if calls >= n {
		t.Fatalf("%d write calls for %d Writes: nothing gathered", calls, n)
	}
}

// TestCoalescingConnReportsAFailedWrite: once the peer is gone, a later Write returns the socket's error instead
// of queueing for ever, and Close returns even with a write stuck on a peer that does not read.
func TestCoalescingConnReportsAFailedWrite(t *testing.T) {
	client, server := tcpPair(t)
	w := newCoalescingConn(client)
	server.Close()
	pkt := make([]byte, 32<<10)
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = w.Write(pkt)
	}
	if err == nil || errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after the peer closed: %v, want the socket's error", err)
	}

	client2, _ := tcpPair(t) // a peer that never reads: the socket fills, the flusher blocks in write(2)
	w2 := newCoalescingConn(client2)
	writing := make(chan error, 1)
	go func() {
		for {
			if _, err := w2.Write(pkt); err != nil {
				writing <- err
				return
			}
		}
	}()
	time.Sleep(500 * time.Millisecond) // the socket's buffer and maxPending fill; the writer waits
	closed := make(chan error, 1)
	go func() { closed <- w2.Close() }()
	for _, c := range []struct {
		what string
		ch   chan error
	}{{"Close", closed}, {"the waiting Write", writing}} {
		select {
		case <-c.ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not return with a write stuck on a full socket", c.what)
		}
	}
	if _, err := w2.Write(pkt); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}
