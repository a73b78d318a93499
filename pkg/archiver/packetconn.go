package archiver

import (
	"cmp"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

const (
	// sshBufSize is the size of the bufio.Writer x/crypto/ssh's transport writes each packet through.
	sshBufSize = 4096
	// gcmOverhead is what an AES-GCM SSH packet carries besides its encrypted bytes: the packet length, in the
	// clear (RFC 5647), and the tag.
	gcmOverhead = 4 + 16
)

// packetConn is the archive server's TCP connection under x/crypto/ssh. It changes how the bytes reach the
// socket, never which bytes or in what order, to take two per-packet costs out of an upload (see
// docs/benchmarks.md):
//
//   - ssh's transport writes every packet through a 4 KiB bufio.Writer: a packet larger than that (each 32 KiB
//     channel packet of an upload) reaches the socket as two writes, its first 4 KiB and the rest, so two
//     syscalls and (TCP_NODELAY) two segments, each waking sshd. Once the connection has negotiated AES-GCM,
//     whose packets say their length in the clear, a write that is the first 4 KiB of a longer packet is held
//     and sent with the next write, the rest of that packet (bufio writes it in the same call), in one writev.
//     A whole packet is never held: an AES-GCM packet of exactly 4 KiB cannot exist (4096-20 is not a multiple
//     of 16).
//   - The socket is non-blocking (Go's netpoller waits for it), so a read or write returns at once, with EAGAIN
//     when it would block. They are made as raw system calls inside syscall.RawConn's Read and Write, which wait
//     through the netpoller (and honour deadlines and Close) as net.TCPConn does: Go's usual syscall entry wakes
//     the runtime's sysmon thread, which then polls every 20 µs and hands the P to another thread when a call
//     takes longer, for each of the 32,768 writes of a GiB.
type packetConn struct {
	net.Conn
	raw syscall.RawConn
	gcm atomic.Bool

	mu   sync.Mutex // Write's; x/crypto/ssh never writes concurrently, but held must not depend on it
	held []byte
	iov  [2]unix.Iovec
}

// newPacketConn wraps c (a *net.TCPConn; the tests use a Unix socket); without a raw connection it returns c
// itself.
func newPacketConn(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	return &packetConn{Conn: c, raw: raw, held: make([]byte, 0, sshBufSize)}
}

// negotiated tells nc, if it is a packetConn, the cipher the handshake on it agreed.
func negotiated(nc net.Conn, sc ssh.Conn) {
	pc, ok := nc.(*packetConn)
	if am, isAM := sc.(ssh.AlgorithmsConnMetadata); ok && isAM {
		pc.negotiated(am.Algorithms().Write.Cipher)
	}
}

// negotiated tells the connection the cipher its writes use from now on (the client's first choice the server
// has: a key re-exchange picks the same one; a server that offered another one then could at worst delay a 4 KiB
// packet until the next write, the keepalive's at the latest, which it can do anyway by not reading).
func (c *packetConn) negotiated(cipher string) {
	c.gcm.Store(cipher == ssh.CipherAES128GCM || cipher == ssh.CipherAES256GCM)
}

// Write implements net.Conn.
func (c *packetConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.held) > 0 {
		n, err := c.writev(c.held, p)
		n -= len(c.held)
		c.held = c.held[:0]
		return max(n, 0), err
	}
	if len(p) == sshBufSize && c.gcm.Load() && uint64(binary.BigEndian.Uint32(p))+gcmOverhead > sshBufSize {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	return c.writev(nil, p)
}

// writev writes a, then b, and returns how many bytes of both it wrote.
func (c *packetConn) writev(a, b []byte) (int, error) {
	var total int
	var werr error
	err := c.raw.Write(func(fd uintptr) bool {
		for len(a)+len(b) > 0 {
			iov := c.iov[:0]
			for _, s := range [][]byte{a, b} {
				if len(s) > 0 {
					v := unix.Iovec{Base: &s[0]}
					v.SetLen(len(s))
					iov = append(iov, v)
				}
			}
			n, _, errno := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
			if errno == unix.EINTR {
				continue
			}
			if errno == unix.EAGAIN {
				return false // wait until the socket takes more
			}
			if errno != 0 {
				werr = errno
				return true
			}
			total += int(n)
			k := min(int(n), len(a))
			a, b = a[k:], b[int(n)-k:]
		}
		return true
	})
	return total, cmp.Or(werr, err)
}

// Read implements net.Conn.
func (c *packetConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			m, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch errno {
			case 0:
				if n = int(m); n == 0 {
					rerr = io.EOF
				}
				return true
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait until there is something to read
			default:
				rerr = errno
				return true
			}
		}
	})
	return n, cmp.Or(rerr, err)
}
