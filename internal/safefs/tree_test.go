package safefs

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/fstest"
)

// A dump 40 levels deep must be found (the archiver's walk used to stop at 32 and GC then deleted the dump), and
// far deeper than the descriptor window too, with a file and a sibling directory at every level so the walk has to
// return to released levels.
func TestWalkFindsEveryDepth(t *testing.T) {
	for _, tc := range []struct {
		depth    int
		siblings bool
	}{{40, false}, {3*openWindow + 5, true}} {
		dir := t.TempDir()
		deepest := nest(t, dir, tc.depth, tc.siblings)
		d, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]uint32{}
		res, err := Walk(d, "", func(e Entry) bool { seen[e.Rel] = e.Kind(); return true })
		d.Close()
		if err != nil || len(res.Mounts) != 0 || len(res.TooDeep) != 0 {
			t.Fatalf("depth %d: %+v, %v", tc.depth, res, err)
		}
		if seen[deepest+"/leaf"] != unix.S_IFREG {
			t.Errorf("depth %d: the leaf file was not found", tc.depth)
		}
		want := tc.depth + 1
		if tc.siblings {
			want = 3*tc.depth + 1
		}
		if len(seen) != want {
			t.Errorf("depth %d: %d entries, want %d", tc.depth, len(seen), want)
		}
	}
}

func TestWalkReturnsWhatIsTooDeep(t *testing.T) {
	dir := t.TempDir()
	deepest := nest(t, dir, MaxWalkDepth+1, false)
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	n := 0
	res, err := Walk(d, "", func(Entry) bool { n++; return true })
	if err != nil {
		t.Fatal(err)
	}
	tooDeep := deepest[:strings.LastIndex(deepest, "/")]
	if !slices.Equal(res.TooDeep, []string{tooDeep}) || n != MaxWalkDepth {
		t.Errorf("TooDeep %d entries (%d visited), want the directory at depth %d", len(res.TooDeep), n, MaxWalkDepth)
	}
	if err := RemoveAllAt(d, "d1"); err != nil {
		t.Fatalf("RemoveAllAt of a tree %d deep: %v", MaxWalkDepth+1, err)
	}
	if names, _ := ReadDirNames(d); len(names) != 0 {
		t.Errorf("left: %v", names)
	}
}

// mountFixture: <tmp>/tree/{file, in/mnt} with an outside directory of the same filesystem (same st_dev, so only
// the mount ID tells) bind-mounted on in/mnt.
func mountFixture(t *testing.T) (base string, before map[string]string) {
	requireRoot(t)
	base = t.TempDir()
	outside := filepath.Join(base, "outside")
	before = outsideTree(t, outside)
	mnt := filepath.Join(base, "tree", "in", "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "tree", "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	fstest.BindMount(t, outside, mnt)
	return base, before
}

func TestWalkNeverEntersAnotherMount(t *testing.T) {
	base, _ := mountFixture(t)
	d, err := OpenDir(filepath.Join(base, "tree"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var seen []string
	res, err := Walk(d, "", func(e Entry) bool { seen = append(seen, e.Rel); return true })
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(seen)
	if !slices.Equal(res.Mounts, []string{"in/mnt"}) || !slices.Equal(seen, []string{"file", "in", "in/mnt"}) {
		t.Errorf("Mounts %v, seen %v", res.Mounts, seen)
	}
	mounts, err := MountsBelow(d)
	if err != nil || !slices.Equal(mounts, []string{filepath.Join(base, "tree", "in", "mnt")}) {
		t.Errorf("MountsBelow = %v, %v", mounts, err)
	}
	in, err := OpenDirAt(d, "in", false)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if _, err := OpenSubdirAt(in, "mnt"); !errors.Is(err, ErrOtherMount) {
		t.Errorf("OpenSubdirAt(mount point) = %v", err)
	}
	if m, err := MountAt(in, "mnt"); err != nil || m.Mnt == 0 {
		t.Errorf("MountAt = %+v, %v", m, err)
	} else if pm, _ := MountOf(in); pm.Dev != m.Dev || pm.Mnt == m.Mnt {
		t.Errorf("fixture: want the same st_dev and another mount ID, got %+v and %+v", pm, m)
	}
}

// The GC's removal used to empty a bind-mounted outside directory inside an expired pod directory.
func TestRemoveAllAtNeverEmptiesAMount(t *testing.T) {
	base, before := mountFixture(t)
	b, err := OpenDir(base)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = RemoveAllAt(b, "tree")
	if !errors.Is(err, ErrOtherMount) || !strings.Contains(err.Error(), filepath.Join(base, "tree", "in", "mnt")) {
		t.Fatalf("RemoveAllAt = %v; want ErrOtherMount naming the mount point", err)
	}
	if after := hashTree(t, filepath.Join(base, "outside")); !maps.Equal(before, after) {
		t.Fatalf("the mounted directory changed: %v, was %v", after, before)
	}
	if err := unix.Unmount(filepath.Join(base, "tree", "in", "mnt"), 0); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAllAt(b, "tree"); err != nil {
		t.Fatal(err)
	}
	if ExistsAt(b, "tree") || !maps.Equal(before, hashTree(t, filepath.Join(base, "outside"))) {
		t.Error("after the unmount: tree not removed, or the outside directory changed")
	}
}

func TestRemoveAllAtNeverFollowsSymlinks(t *testing.T) {
	vol, outside := fixture(t)
	base, err := OpenDir(filepath.Dir(vol.Name()))
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	if err := RemoveAllAt(base, "vol"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(outside, "secret")); err != nil || string(b) != "HOST SECRET" {
		t.Fatalf("symlink target touched: %q %v", b, err)
	}
	if ExistsAt(base, "vol") {
		t.Error("vol not removed")
	}
	if err := RemoveAllAt(base, "vol"); err != nil {
		t.Errorf("a missing name: %v", err)
	}
}
