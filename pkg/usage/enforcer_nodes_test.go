package usage

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A pod can swap a file for a device node or a FIFO at any time, and opening a device runs its driver (a watchdog
// arms, a tape rewinds, a FIFO blocks). The enforcer and IsImmutable opened paths O_RDONLY|O_NONBLOCK before knowing
// their type; now a name is opened only as a directory or as a regular file proven on an O_PATH descriptor. A real
// IN_OPEN watch on each node must stay silent through Block, Unblock, setImmutable and IsImmutable.
func TestEnforcerNeverOpensDevicesOrFIFOs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mknod, the immutable attribute)")
	}
	root := t.TempDir()
	pod := filepath.Join(root, "ns_pod_uid")
	writeFile(t, filepath.Join(pod, "app", "app.log"), 100)
	nodes := map[string]int{
		"chardev": watchedNode(t, filepath.Join(pod, "app", "chardev"), unix.S_IFCHR, int(unix.Mkdev(1, 3))),
		"fifo":    watchedNode(t, filepath.Join(pod, "app", "fifo"), unix.S_IFIFO, 0),
	}
	e, err := NewAttrEnforcer(filepath.Join(root, ".keeplog", "usage", "blocked"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Unblock(pod) })
	blockErr := e.Block(pod) // the attribute may be unsupported here; what matters is what was opened
	for name := range nodes {
		p := filepath.Join(pod, "app", name)
		if err := setImmutable(p, false, true); err == nil {
			t.Errorf("setImmutable(%s) succeeded on a %s", p, name)
		}
		if _, err := IsImmutable(p); err == nil {
			t.Errorf("IsImmutable(%s) succeeded on a %s", p, name)
		}
	}
	if err := e.Unblock(pod); err != nil && blockErr == nil {
		t.Errorf("Unblock: %v", err)
	}
	for name, w := range nodes {
		if opened(t, w) {
			t.Errorf("the %s was opened (IN_OPEN)", name)
		}
	}
	if blockErr == nil {
		if on, err := IsImmutable(filepath.Join(pod, "app", "app.log")); err != nil || on {
			t.Errorf("app.log after Unblock: immutable %v, %v", on, err)
		}
	}
}

// watchedNode makes a device node or FIFO at path with an inotify IN_OPEN watch on it, and checks the method: a
// real open is seen.
func watchedNode(t *testing.T, path string, mode uint32, dev int) int {
	t.Helper()
	if err := unix.Mknod(path, mode|0o666, dev); err != nil {
		t.Fatalf("mknod %s: %v", path, err)
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_OPEN); err != nil {
		t.Fatalf("watch %s: %v", path, err)
	}
	probe, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("method check: open %s: %v", path, err)
	}
	unix.Close(probe)
	if !opened(t, fd) {
		t.Fatal("method check: a real open generated no IN_OPEN on this kernel")
	}
	return fd
}

// opened reads the watch without blocking: true if an IN_OPEN event is queued.
func opened(t *testing.T, fd int) bool {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Read(fd, buf)
	if errors.Is(err, unix.EAGAIN) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		if binary.NativeEndian.Uint32(buf[off+4:])&unix.IN_OPEN != 0 { // struct inotify_event: wd, mask, ...
			return true
		}
		off += unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(buf[off+12:]))
	}
	return false
}
