package fstest

import (
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// OpenWatch returns a non-blocking inotify descriptor watching each path (the node itself) for IN_OPEN; the
// test's cleanup closes it.
func OpenWatch(t testing.TB, paths ...string) int {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	for _, p := range paths {
		if _, err := unix.InotifyAddWatch(fd, p, unix.IN_OPEN); err != nil {
			t.Fatalf("watch %s: %v", p, err)
		}
	}
	return fd
}

// Opened reads the watch without blocking: true if any IN_OPEN event is queued. It consumes what it reads, so a
// second call sees only opens since the first.
func Opened(t testing.TB, fd int) bool {
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

// WatchedNode creates a node at path (mknod with mode, e.g. S_IFCHR with /dev/null's numbers Mkdev(1, 3), or
// S_IFIFO; permissions 0666) and returns an IN_OPEN watch on it, after checking the method on this kernel: an
// O_PATH open is not seen, a real open is.
func WatchedNode(t testing.TB, path string, mode uint32, dev int) int {
	t.Helper()
	if err := unix.Mknod(path, mode|0o666, dev); err != nil {
		t.Fatalf("mknod %s: %v", path, err)
	}
	w := OpenWatch(t, path)
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = unix.Close(fd)
	if Opened(t, w) {
		t.Fatal("method check: an O_PATH open generated IN_OPEN on this kernel")
	}
	fd, err = unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("method check: open %s: %v", path, err)
	}
	_ = unix.Close(fd)
	if !Opened(t, w) {
		t.Fatal("method check: a real open generated no IN_OPEN on this kernel")
	}
	return w
}
