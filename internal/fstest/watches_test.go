package fstest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The kernel's list of this process's watches names exactly the directories watched, by device and inode. Twenty
// watches: the kernel prints watch descriptors in hex, so some are not decimal numbers.
func TestInotifyWatchedNamesTheWatchedDirectories(t *testing.T) {
	root := t.TempDir()
	var dirs []string
	for i := range 21 {
		d := filepath.Join(root, fmt.Sprintf("d%02d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	before, err := InotifyWatches(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	watched, unwatched := dirs[:20], dirs[20]
	for _, d := range watched {
		if _, err := unix.InotifyAddWatch(fd, d, unix.IN_CREATE); err != nil {
			t.Fatal(err)
		}
	}
	got, err := InotifyWatched(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	key := func(p string) Watched {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return Watched{Dev: uint64(st.Dev), Ino: st.Ino}
	}
	for _, d := range watched {
		if !got[key(d)] {
			t.Errorf("%s (%v) is watched but not listed in %v", d, key(d), got)
		}
	}
	if got[key(unwatched)] {
		t.Errorf("%s (%v) is not watched but listed", unwatched, key(unwatched))
	}
	if n, err := InotifyWatches(os.Getpid()); err != nil || n != before+20 {
		t.Fatalf("%d watches (%v) after 20 more than %d", n, err, before)
	}
}
