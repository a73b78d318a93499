//go:build e2e

package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"

	"github.com/keeplog/keeplog/test/e2e/lab"
)

const msgNotLeading = "No longer leading the cluster-wide garbage collection"

// TestGCLeaderPartitioned cuts the GC leader off the API server the way a partition that drops packets does: its
// connections stay open and nothing comes back (a TCP proxy between node-a and the lab's API server stops
// forwarding). Its renewals hang; it must stop leading before node-b, which still reaches the API server, takes the
// Lease 15 s after node-a's last renewal. Before pkg/semaphore bounded a renewal in flight, node-a led until about
// 20 s after it.
func TestGCLeaderPartitioned(t *testing.T) {
	ctx := context.Background()
	l := startLab(ctx, t)
	c := l.Client()
	tl := &timeline{t: t, begin: time.Now()}
	t.Cleanup(tl.print)
	fr := startFreezer(t, l.APIServerURL())
	a := startGCNode(ctx, t, proxiedKubeconfig(t, l, fr.Addr()), "node-a")
	lease := waitLease(ctx, t, c, "node-a as holder", func(l *coordinationv1.Lease) bool { return holderOf(l) == "node-a" })
	tl.at("Lease taken by node-a (through the proxy)", lease.Spec.AcquireTime.Time)
	startGCNode(ctx, t, l.Kubeconfig(), "node-b")
	// Freeze right after a renewal, so that the next one is the first to hang.
	renewed := lease.Spec.RenewTime.Time
	waitLease(ctx, t, c, "a renewal by node-a", func(l *coordinationv1.Lease) bool { return l.Spec.RenewTime.After(renewed) })
	fr.Freeze()
	tl.at("proxy frozen", time.Now())
	last := getLease(ctx, t, c)
	tl.at("last renewal by node-a", last.Spec.RenewTime.Time)
	taken := waitLease(ctx, t, c, "node-b as holder", func(l *coordinationv1.Lease) bool { return holderOf(l) == "node-b" })
	tl.at("Lease taken by node-b", taken.Spec.AcquireTime.Time)
	wantTakeover(t, last, taken, "node-b")
	var stopped time.Time
	for _, line := range logLines(t, a, 0, msgNotLeading) {
		stopped = line.Time
	}
	if stopped.IsZero() {
		t.Fatalf("node-b took the Lease at %s and node-a has not stopped leading (no %q in its log): two leaders at once; its log:\n%s",
			taken.Spec.AcquireTime.Format(time.StampMilli), msgNotLeading, a.LogTail(20))
	}
	tl.at("node-a stopped leading (its log)", stopped)
	if !stopped.Before(taken.Spec.AcquireTime.Time) {
		t.Fatalf("node-a stopped leading at %s, after node-b took the Lease at %s: two leaders at once",
			stopped.Format(time.StampMilli), taken.Spec.AcquireTime.Format(time.StampMilli))
	}
	// RunElected's renew deadline is 10 s; 3 s more for the loop to end and the line to be written.
	if after := stopped.Sub(last.Spec.RenewTime.Time); after > 13*time.Second {
		t.Fatalf("node-a stopped leading %s after its last renewal, want about 10 s", after)
	}
	fr.close() // node-a's requests fail at once: it stops quickly
}

// proxiedKubeconfig is the lab's kubeconfig with its API server at addr (same certificate: it names 127.0.0.1).
func proxiedKubeconfig(t *testing.T, l *lab.Lab, addr string) string {
	t.Helper()
	b, err := os.ReadFile(l.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), l.APIServerURL()) {
		t.Fatalf("%s does not name %s", l.Kubeconfig(), l.APIServerURL())
	}
	path := filepath.Join(t.TempDir(), "proxied.kubeconfig")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(b), l.APIServerURL(), "https://"+addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// freezer is a loopback TCP proxy that forwards until Freeze, and from then on reads and drops everything in both
// directions while keeping every connection open: a peer behind it waits until its own timeouts.
type freezer struct {
	l      net.Listener
	target string
	frozen chan struct{}
	once   sync.Once
	mu     sync.Mutex
	conns  []net.Conn
}

func startFreezer(t *testing.T, apiURL string) *freezer {
	t.Helper()
	u, err := url.Parse(apiURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{l: ln, target: u.Host, frozen: make(chan struct{})}
	go f.accept()
	t.Cleanup(f.close)
	return f
}

// Addr is host:port to dial instead of the target.
func (f *freezer) Addr() string { return f.l.Addr().String() }

// Freeze stops forwarding, for good.
func (f *freezer) Freeze() { f.once.Do(func() { close(f.frozen) }) }

func (f *freezer) accept() {
	for {
		down, err := f.l.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", f.target)
		if err != nil {
			down.Close()
			continue
		}
		f.mu.Lock()
		f.conns = append(f.conns, down, up)
		f.mu.Unlock()
		go f.pipe(up, down)
		go f.pipe(down, up)
	}
}

// pipe copies src to dst until Freeze, then drops what it reads until src is closed.
func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-f.frozen:
			n = 0
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			select {
			case <-f.frozen: // a peer's close is not passed on either
			default:
				_ = dst.(*net.TCPConn).CloseWrite()
			}
			return
		}
	}
}

// close ends the listener and every connection.
func (f *freezer) close() {
	f.Freeze()
	f.l.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
}
