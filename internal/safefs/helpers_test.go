package safefs

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// requireRoot skips tests that mknod, mount or watch device nodes when not run as root (they run as root in CI).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mknod, mount)")
	}
}

// openWatch is an inotify instance watching path (the node itself) for IN_OPEN, non-blocking.
func openWatch(t *testing.T, path string) int {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_OPEN); err != nil {
		t.Fatalf("watch %s: %v", path, err)
	}
	return fd
}

// opened reads the watch without blocking: true if any IN_OPEN event is queued.
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
		mask := binary.NativeEndian.Uint32(buf[off+4:]) // struct inotify_event: wd, mask, cookie, len, name
		if mask&unix.IN_OPEN != 0 {
			return true
		}
		off += unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(buf[off+12:]))
	}
	return false
}

// watchedNode creates a node (mknod with mode, e.g. S_IFCHR with /dev/null's numbers, or S_IFIFO) and an IN_OPEN
// watch on it, and checks the method: an O_PATH open is not seen, a real open is.
func watchedNode(t *testing.T, dir, name string, mode uint32, dev int) int {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := unix.Mknod(path, mode|0o666, dev); err != nil {
		t.Fatalf("mknod %s: %v", path, err)
	}
	w := openWatch(t, path)
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if opened(t, w) {
		t.Fatal("method check: an O_PATH open generated IN_OPEN on this kernel")
	}
	fd, err = unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("method check: open %s: %v", path, err)
	}
	unix.Close(fd)
	if !opened(t, w) {
		t.Fatal("method check: a real open generated no IN_OPEN on this kernel")
	}
	return w
}
