package fstest

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The kernel's list of this process's watches names exactly the directories watched, by device and inode.
func TestInotifyWatchedNamesTheWatchedDirectories(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
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
	if _, err := unix.InotifyAddWatch(fd, a, unix.IN_CREATE); err != nil {
		t.Fatal(err)
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
	if !got[key(a)] || got[key(b)] {
		t.Fatalf("watched %v: a (%v) %v, b (%v) %v; want a only", got, key(a), got[key(a)], key(b), got[key(b)])
	}
	if n, err := InotifyWatches(os.Getpid()); err != nil || n != before+1 || len(got) < 1 {
		t.Fatalf("%d watches (%v) after one more than %d", n, err, before)
	}
}
