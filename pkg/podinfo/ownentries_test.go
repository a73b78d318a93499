package podinfo

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/fstest"
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
	nodes := map[string]int{
		"chardev": fstest.WatchedNode(t, filepath.Join(dir, "chardev"), unix.S_IFCHR, int(unix.Mkdev(1, 3))),
		"fifo":    fstest.WatchedNode(t, filepath.Join(dir, "fifo"), unix.S_IFIFO, 0),
	}
	d, err := safefs.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := rootOwnEntries(d); err != nil {
		t.Fatal(err)
	}
	for name, w := range nodes {
		if fstest.Opened(t, w) {
			t.Errorf("the %s was opened (IN_OPEN)", name)
		}
	}
	for name, mode := range map[string]uint32{"pod.yaml": keeplogFileMode, "logs": keeplogDirMode} {
		st, err := safefs.Lstat(d, name)
		if err != nil || st.Uid != 0 || st.Mode&0o7777 != mode {
			t.Errorf("%s: uid %d mode %o (%v), want root and %o", name, st.Uid, st.Mode&0o7777, err, mode)
		}
	}
}
