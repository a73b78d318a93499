package safefs

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/fstest"
)

// A root container can swap a settled dump for a device node or a FIFO. Opening a device runs its driver (opening a
// watchdog arms it), so OpenFileAt must refuse both without ever opening them: a real IN_OPEN watch on each node
// must stay silent.
func TestOpenFileAtNeverOpensDevicesOrFIFOs(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	nodes := map[string]int{
		"chardev": fstest.WatchedNode(t, filepath.Join(dir, "chardev"), unix.S_IFCHR, int(unix.Mkdev(1, 3))), // /dev/null's numbers
		"fifo":    fstest.WatchedNode(t, filepath.Join(dir, "fifo"), unix.S_IFIFO, 0),
	}
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for name, w := range nodes {
		for _, flag := range []int{unix.O_RDONLY, unix.O_RDWR, unix.O_WRONLY | unix.O_NONBLOCK} {
			f, _, err := OpenFileAt(d, name, flag)
			if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), filepath.Join(dir, name)) {
				t.Errorf("OpenFileAt(%s, %#x) = %v, %v; want ErrNotRegular naming the path", name, flag, f, err)
			}
			if f != nil {
				f.Close()
			}
		}
		if fstest.Opened(t, w) {
			t.Errorf("%s was opened (IN_OPEN)", name)
		}
	}
}

func TestOpenFileAtReopensTheProvenRegularFile(t *testing.T) {
	vol, _ := fixture(t)
	f, st, err := OpenFileAt(vol, "file", unix.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("DA"), 0); err != nil {
		t.Fatalf("opened O_RDWR but cannot write: %v", err)
	}
	var fst unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &fst); err != nil || fst.Ino != st.Ino {
		t.Errorf("returned stat is not the descriptor's: %d vs %d (%v)", st.Ino, fst.Ino, err)
	}
	if fl, _ := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0); fl&unix.O_PATH != 0 {
		t.Error("the returned descriptor is the O_PATH one")
	}
	for _, flag := range []int{unix.O_RDWR | unix.O_CREAT, unix.O_PATH, unix.O_DIRECTORY} {
		if f, _, err := OpenFileAt(vol, "file", flag); err == nil {
			f.Close()
			t.Errorf("flags %#x accepted", flag)
		}
	}
}
