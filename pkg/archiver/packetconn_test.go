package archiver

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// seqpacketPair is a connected pair of Unix SOCK_SEQPACKET sockets: every write is one record and every read
// returns one record, so a test sees how many writes a packet took.
func seqpacketPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "seqpacket")
		c, err := net.FileConn(f)
		_ = f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		conns[i] = c
	}
	return conns[0], conns[1]
}

// gcmPacket is an AES-GCM SSH packet's shape on the wire: the length in the clear, then length+16 bytes.
func gcmPacket(length int, seed uint64) []byte {
	p := make([]byte, 4+length+16)
	binary.BigEndian.PutUint32(p, uint32(length))
	r := rand.NewChaCha8([32]byte{byte(seed)})
	_, _ = r.Read(p[4:])
	return p
}

// writeLikeSSH writes a packet as x/crypto/ssh's transport does: its 4-byte length, then the rest, through a 4 KiB
// bufio.Writer, flushed.
func writeLikeSSH(t *testing.T, w *bufio.Writer, p []byte) {
	t.Helper()
	if _, err := w.Write(p[:4]); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(p[4:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// readRecord reads one record, failing after a second.
func readRecord(t *testing.T, c net.Conn) []byte {
	t.Helper()
	buf := make([]byte, 1<<20)
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read a record: %v", err)
	}
	return buf[:n]
}

func TestPacketConnSendsAnAESGCMPacketInOneWrite(t *testing.T) {
	a, b := seqpacketPair(t)
	pc, ok := newPacketConn(a).(*packetConn)
	if !ok {
		t.Fatal("a Unix socket was not wrapped")
	}
	pc.negotiated(ssh.CipherAES128GCM)
	w := bufio.NewWriterSize(pc, sshBufSize) // x/crypto/ssh's transport: bufio.NewWriter
	for i, length := range []int{32768 + 32, 4096, 8192 + 16, 1008, 64*1024 + 48} {
		p := gcmPacket(length, uint64(i))
		writeLikeSSH(t, w, p)
		if got := readRecord(t, b); !bytes.Equal(got, p) {
			t.Fatalf("packet %d (%d bytes): the first write on the socket has %d bytes, want the whole packet", i, len(p), len(got))
		}
	}
}

func TestPacketConnHoldsNothingItCannotPlace(t *testing.T) {
	a, b := seqpacketPair(t)
	pc := newPacketConn(a).(*packetConn)
	// Before the key exchange (and with any other cipher) the length is not known to be in the clear: a 4 KiB
	// write that would be the start of a long AES-GCM packet goes out as it is.
	long := gcmPacket(32768+32, 1)[:sshBufSize]
	if _, err := pc.Write(long); err != nil {
		t.Fatal(err)
	}
	if got := readRecord(t, b); !bytes.Equal(got, long) {
		t.Fatalf("before AES-GCM was negotiated: read %d bytes, want the 4096 written", len(got))
	}
	for _, cipher := range []string{ssh.CipherChaCha20Poly1305, ssh.CipherAES128CTR} {
		pc.negotiated(cipher)
		if _, err := pc.Write(long); err != nil {
			t.Fatal(err)
		}
		if got := readRecord(t, b); !bytes.Equal(got, long) {
			t.Fatalf("with %s: read %d bytes, want the 4096 written", cipher, len(got))
		}
	}
	// With AES-GCM, a 4 KiB write whose length says it is a whole packet (or an impossible length: 4076 is not a
	// multiple of 16) is not held either.
	pc.negotiated(ssh.CipherAES256GCM)
	whole := make([]byte, sshBufSize)
	binary.BigEndian.PutUint32(whole, sshBufSize-gcmOverhead)
	if _, err := pc.Write(whole); err != nil {
		t.Fatal(err)
	}
	if got := readRecord(t, b); len(got) != sshBufSize {
		t.Fatalf("a 4 KiB packet: read %d bytes, want 4096", len(got))
	}
}

// tcpPair is a connected loopback TCP pair; a is wrapped in a packetConn.
func tcpPair(t *testing.T) (*packetConn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(); _ = s.Close() })
	pc, ok := newPacketConn(c).(*packetConn)
	if !ok {
		t.Fatal("a TCP connection was not wrapped")
	}
	return pc, s
}

// TestPacketConnStreamsThroughAFullSocket sends 64 MiB of AES-GCM-shaped packets to a peer that reads slowly at
// first, so that writes meet a full socket (EAGAIN, partial writes of a joined packet) and wait for it; the peer
// must get every byte in order.
func TestPacketConnStreamsThroughAFullSocket(t *testing.T) {
	pc, peer := tcpPair(t)
	pc.negotiated(ssh.CipherAES128GCM)
	var want bytes.Buffer
	for i := 0; want.Len() < 64<<20; i++ {
		want.Write(gcmPacket(32768+16*(i%7), uint64(i)))
	}
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(200 * time.Millisecond) // let the socket fill
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	w := bufio.NewWriterSize(pc, sshBufSize)
	for rest := want.Bytes(); len(rest) > 0; {
		n := 4 + int(binary.BigEndian.Uint32(rest)) + 16
		writeLikeSSH(t, w, rest[:n])
		rest = rest[n:]
	}
	if err := pc.Conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("the peer got %d bytes, not the %d sent in order", len(b), want.Len())
	}
}

func TestPacketConnReadsDeadlinesAndClose(t *testing.T) {
	pc, peer := tcpPair(t)
	_ = pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := pc.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a read past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	_ = pc.SetReadDeadline(time.Time{})
	go func() {
		time.Sleep(50 * time.Millisecond) // the read waits for it
		_, _ = peer.Write([]byte("hello"))
	}()
	buf := make([]byte, 10)
	if n, err := pc.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read %q, %v; want hello", buf[:n], err)
	}
	_ = peer.Close()
	if n, err := pc.Read(buf); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after the peer closed: %d, %v; want io.EOF", n, err)
	}
	_ = pc.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := pc.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a write past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	done := make(chan error, 1)
	pc2, _ := tcpPair(t)
	go func() {
		_, err := pc2.Read(buf)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	_ = pc2.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("a read when the connection is closed: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting read")
	}
}

// TestDialNegotiatesAESGCMWithOpenSSH: against a real sshd, the handshake Dial makes agrees on AES-GCM and the
// connection under it learns so (else it never joins a packet's writes).
func TestDialNegotiatesAESGCMWithOpenSSH(t *testing.T) {
	e := newEnv(t)
	d, err := NewSSHDialer(e.target(), SSHDialerOptions{ConnectTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Dial("tcp", e.target().Addr())
	if err != nil {
		t.Fatal(err)
	}
	pc := newPacketConn(tcp)
	c, _, _, err := ssh.NewClientConn(pc, e.target().Addr(), d.config)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	negotiated(pc, c)
	if !pc.(*packetConn).gcm.Load() {
		t.Fatalf("the connection does not know it uses AES-GCM (negotiated %+v)", c.(ssh.AlgorithmsConnMetadata).Algorithms())
	}
}
