package podinfo

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/safefs"
)

// A root pod can plant a device node or a FIFO in .keeplog/ (or a log copy directory); taking the entries back to
// root:root used to open each one (O_RDONLY|O_NONBLOCK), running the device's open. Now they are never opened (no
// IN_OPEN on the nodes) while regular files and directories are still taken back.
func TestRootOwnEntriesNeverOpensDevicesOrFIFOs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mknod, chown)")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pod.yaml"), []byte("x"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "pod.yaml"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o777); err != nil {
		t.Fatal(err)
	}
	w, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(w)
	for name, node := range map[string][2]int{"chardev": {unix.S_IFCHR, int(unix.Mkdev(1, 3))}, "fifo": {unix.S_IFIFO, 0}} {
		path := filepath.Join(dir, name)
		if err := unix.Mknod(path, uint32(node[0])|0o666, node[1]); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.InotifyAddWatch(w, path, unix.IN_OPEN); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
	}
	if !opened(t, w) {
		t.Fatal("method check: a plain open generated no IN_OPEN")
	}
	d, err := safefs.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := rootOwnEntries(d); err != nil {
		t.Fatal(err)
	}
	if opened(t, w) {
		t.Error("a device node or FIFO was opened (IN_OPEN)")
	}
	for name, mode := range map[string]uint32{"pod.yaml": keeplogFileMode, "logs": keeplogDirMode} {
		st, err := safefs.Lstat(d, name)
		if err != nil || st.Uid != 0 || st.Mode&0o7777 != mode {
			t.Errorf("%s: uid %d mode %o (%v), want root and %o", name, st.Uid, st.Mode&0o7777, err, mode)
		}
	}
}

// opened reads a non-blocking inotify descriptor: whether an IN_OPEN event is queued.
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
	for off := 0; off+unix.SizeofInotifyEvent <= n; off += unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(buf[off+12:])) {
		if binary.NativeEndian.Uint32(buf[off+4:])&unix.IN_OPEN != 0 {
			return true
		}
	}
	return false
}
