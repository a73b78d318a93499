//go:build soak

package soak

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	kbin "github.com/keeplog/keeplog/test/binary"
)

// A root container (CAP_MKNOD is in the default set) can swap a character device or a FIFO in for a settled dump
// between settle and upload. keeplog, root on the host, must never open it: opening /dev/watchdog arms the node's
// watchdog, and opening a FIFO blocks. The soak renames such nodes over settled dumps in some pod directories and
// watches each node itself with inotify IN_OPEN, which an open by any process reports and an O_PATH open (what
// keeplog's safefs uses to look before it opens) does not: keeplog's own log is not the witness.

// nodeKind is what is swapped in.
type nodeKind int

const (
	nodeDevice nodeKind = iota // a character device with /dev/null's numbers (never /dev/watchdog's)
	nodeFIFO
)

func (k nodeKind) String() string { return [...]string{"device", "FIFO"}[k] }

// swappedNode is one node renamed over a settled dump.
type swappedNode struct {
	pod  string // the pod directory's name
	rel  string // inside it
	kind nodeKind
	sha  string // of the dump it replaced
}

// nodeWatch is one inotify instance with an IN_OPEN watch on every swapped-in node.
type nodeWatch struct {
	fd int
	mu sync.Mutex
	by map[int]swappedNode // by watch descriptor
}

// newNodeWatch makes the inotify instance and checks the method on a node of each kind in dir: an O_PATH open
// is not reported, a real open is.
func newNodeWatch(dir string) (*nodeWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	w := &nodeWatch{fd: fd, by: map[int]swappedNode{}}
	for _, k := range []nodeKind{nodeDevice, nodeFIFO} {
		if err := w.methodCheck(dir, k); err != nil {
			w.Close()
			return nil, err
		}
	}
	return w, nil
}

func (w *nodeWatch) Close() { unix.Close(w.fd) }

func mknod(path string, k nodeKind) error {
	mode, dev := uint32(unix.S_IFCHR), int(unix.Mkdev(1, 3))
	if k == nodeFIFO {
		mode, dev = unix.S_IFIFO, 0
	}
	return unix.Mknod(path, mode|0o666, dev)
}

func (w *nodeWatch) methodCheck(dir string, k nodeKind) error {
	path := filepath.Join(dir, "method-check-"+k.String())
	if err := mknod(path, k); err != nil {
		return fmt.Errorf("mknod %s: %w", path, err)
	}
	defer os.Remove(path)
	wd, err := unix.InotifyAddWatch(w.fd, path, unix.IN_OPEN)
	if err != nil {
		return err
	}
	defer unix.InotifyRmWatch(w.fd, uint32(wd))
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	unix.Close(fd)
	if n, err := w.readOpens(); err != nil || n[wd] != 0 {
		return fmt.Errorf("method check (%s): an O_PATH open was reported as IN_OPEN (%v)", k, err)
	}
	if fd, err = unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err != nil {
		return err
	}
	unix.Close(fd)
	if n, err := w.readOpens(); err != nil || n[wd] == 0 {
		return fmt.Errorf("method check (%s): a real open generated no IN_OPEN (%v)", k, err)
	}
	return nil
}

// readOpens drains the queue: IN_OPEN events by watch descriptor (an overflow is an error: events were lost).
func (w *nodeWatch) readOpens() (map[int]int, error) {
	out := map[int]int{}
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(w.fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			wd := int(int32(binary.NativeEndian.Uint32(buf[off:]))) // struct inotify_event: wd, mask, cookie, len, name
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			if mask&unix.IN_Q_OVERFLOW != 0 {
				return out, errors.New("the IN_OPEN watch overflowed: events were lost")
			}
			if mask&unix.IN_OPEN != 0 {
				out[wd]++
			}
			off += unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(buf[off+12:]))
		}
	}
}

// swapIn makes a node of kind k beside the settled dump at path (a temporary name no pattern matches), watches it,
// and renames it over the dump, as a root container would.
func (w *nodeWatch) swapIn(path string, k nodeKind, n swappedNode) error {
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".swap-%d.tmp", rand.Uint64()))
	if err := mknod(tmp, k); err != nil {
		return fmt.Errorf("mknod %s: %w", tmp, err)
	}
	wd, err := unix.InotifyAddWatch(w.fd, tmp, unix.IN_OPEN)
	if err != nil {
		return fmt.Errorf("watch %s: %w", tmp, err)
	}
	w.mu.Lock()
	w.by[wd] = n
	w.mu.Unlock()
	return os.Rename(tmp, path)
}

// nodeFigures are what the watch saw at the end.
type nodeFigures struct {
	swapped, devices, fifos int
	opened                  []string // the nodes opened, with how often
	blocked                 []string // keeplog threads blocked in a FIFO's open
	atUpload                int      // nodes keeplog's log says its upload refused (queued as a dump, then swapped)
	stacks                  int      // keeplog's threads whose kernel stack was read
	err                     error
}

// countAtUpload counts the log's lines where an upload refused a node swapped in after the file was queued.
func (f *nodeFigures) countAtUpload(logged []byte) {
	for _, line := range bytes.Split(logged, []byte("\n")) {
		if bytes.Contains(line, []byte("Cannot archive file")) && bytes.Contains(line, []byte("not a regular file")) {
			f.atUpload++
		}
	}
}

// report drains the watch and looks at keeplog's threads: a FIFO opened without O_NONBLOCK blocks in the kernel
// before IN_OPEN is sent, so a thread whose kernel stack is in fifo_open is an open the watch cannot see.
func (w *nodeWatch) report(pid int) nodeFigures {
	opens, err := w.readOpens()
	w.mu.Lock()
	defer w.mu.Unlock()
	f := nodeFigures{swapped: len(w.by), err: err}
	for wd, n := range w.by {
		if n.kind == nodeFIFO {
			f.fifos++
		} else {
			f.devices++
		}
		if c := opens[wd]; c > 0 {
			f.opened = append(f.opened, fmt.Sprintf("%s %s/%s opened %d times", n.kind, n.pod, n.rel, c))
		}
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stack", pid))
	read := 0
	for _, t := range tasks {
		st, err := os.ReadFile(t)
		if err != nil {
			continue // the thread ended
		}
		read++
		if strings.Contains(string(st), "fifo_open") || strings.Contains(string(st), "wait_for_partner") {
			f.blocked = append(f.blocked, t)
		}
	}
	f.stacks = read
	return f
}

func (f nodeFigures) verdicts() []verdict {
	opened := verdict{name: "device/FIFO opens (inotify IN_OPEN on each node)", ok: f.err == nil && len(f.opened) == 0,
		detail: f.opened, figure: fmt.Sprintf("%d (%d nodes swapped in for settled dumps: %d devices, %d FIFOs; method checked)",
			len(f.opened), f.swapped, f.devices, f.fifos)}
	opened.figure += fmt.Sprintf("; %d of them reached the upload, which refused them", f.atUpload)
	if f.err != nil {
		opened.figure += "; " + f.err.Error()
	}
	if f.swapped == 0 {
		opened.ok, opened.figure = false, "no node was swapped in: nothing was checked"
	}
	return []verdict{opened,
		{name: "keeplog threads blocked opening a FIFO", ok: len(f.blocked) == 0 && f.stacks > 0, detail: f.blocked,
			figure: fmt.Sprintf("%d of %d threads (kernel stacks)", len(f.blocked), f.stacks)},
	}
}

// swapDump writes a small dump into the pod's volume, lets it settle (the soak's quiet period is 2 s) for 1.5-6 s,
// and renames a node over it: before keeplog saw it settle, while it is queued for upload, or after it was archived. The dump it replaced may or may not have been archived first: it is recorded as
// swapped, allowed on the server once with its sha256, not required.
func (w *workload) swapDump(rng *rand.Rand, p *podRun, k nodeKind) error {
	w.mu.Lock()
	w.nDump++
	n := w.nDump
	w.mu.Unlock()
	rel := fmt.Sprintf("app/swap-%d/java_pid%d.hprof", n, 1000+n)
	sha, err := kbin.WriteFile(filepath.Join(p.target, filepath.FromSlash(rel)), logUniform(rng, 4<<10, 1<<20), uint64(n))
	if err != nil {
		return err
	}
	time.Sleep(1500*time.Millisecond + time.Duration(rng.IntN(4500))*time.Millisecond)
	sn := swappedNode{pod: p.pod.DirName(), rel: rel, kind: k, sha: sha}
	if err := w.s.nodes.swapIn(filepath.Join(p.target, filepath.FromSlash(rel)), k, sn); err != nil {
		return err
	}
	w.mu.Lock()
	p.swapped = append(p.swapped, sn)
	w.mu.Unlock()
	return nil
}
