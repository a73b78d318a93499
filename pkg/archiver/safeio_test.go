package archiver

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/fstest"
)

const safeioPod = "ns_p_0123456789abcdef0123456789abcdef"

func safeioRoot(t *testing.T) (*podFS, string) {
	t.Helper()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, safeioPod), 0o777); err != nil {
		t.Fatal(err)
	}
	pfs, err := newPodFS(root)
	if err != nil {
		t.Fatal(err)
	}
	return pfs, filepath.Join(pfs.root, safeioPod)
}

// A root container swaps a settled dump for a device node (here with /dev/null's numbers) or a FIFO between settle
// and upload: the upload's open must refuse it without opening it (no IN_OPEN on the node).
func TestPodFSOpenNeverOpensASwappedInDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mknod)")
	}
	pfs, pd := safeioRoot(t)
	if err := os.MkdirAll(filepath.Join(pd, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, node := range map[string][2]int{"dump.hprof": {unix.S_IFCHR, int(unix.Mkdev(1, 3))}, "fifo.hprof": {unix.S_IFIFO, 0}} {
		w := fstest.WatchedNode(t, filepath.Join(pd, "app", name), uint32(node[0]), node[1]) // checks a plain open is seen
		f, _, err := pfs.open(safeioPod, "app/"+name)
		if !errors.Is(err, errNotRegular) {
			t.Errorf("open %s = %v, %v; want errNotRegular", name, f, err)
		}
		if f != nil {
			f.Close()
		}
		if fstest.Opened(t, w) {
			t.Errorf("%s was opened (IN_OPEN)", name)
		}
	}
}

// A dump 40 levels deep was never uploaded (the walk stopped at 32) and then deleted by GC.
func TestWalkFindsAFile40LevelsDeep(t *testing.T) {
	pfs, pd := safeioRoot(t)
	var comps []string
	for i := range 40 {
		comps = append(comps, "l"+strconv.Itoa(i))
	}
	deep := filepath.Join(append([]string{pd}, comps...)...)
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(deep, "heap.hprof"), []byte("dump"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := strings.Join(comps, "/") + "/heap.hprof"
	found := false
	res, err := pfs.walk(safeioPod, func(e entry) { found = found || (e.rel == want && e.kind == unix.S_IFREG) })
	if err != nil || len(res.Mounts) != 0 || len(res.TooDeep) != 0 {
		t.Fatalf("walk: %+v, %v", res, err)
	}
	if !found {
		t.Fatalf("%s not found", want)
	}
	if f, _, err := pfs.open(safeioPod, want); err != nil {
		t.Fatalf("open the deep file: %v", err)
	} else {
		f.Close()
	}
}

// A bind mount inside the pod directory is not the pod's: the walk does not enter it and returns it, mountsIn
// names it, and a file below it cannot be opened through podFS.
func TestWalkDoesNotEnterABindMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount --bind)")
	}
	pfs, pd := safeioRoot(t)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "other.hprof"), []byte("not the pod's"), 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(pd, "app", "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pd, "app", "own.hprof"), []byte("the pod's"), 0o644); err != nil {
		t.Fatal(err)
	}
	fstest.BindMount(t, outside, mnt)
	var seen []string
	res, err := pfs.walk(safeioPod, func(e entry) { seen = append(seen, e.rel) })
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(seen)
	if !slices.Equal(res.Mounts, []string{"app/mnt"}) || len(res.TooDeep) != 0 {
		t.Errorf("result %+v, want Mounts [app/mnt]", res)
	}
	if !slices.Equal(seen, []string{"app", "app/mnt", "app/own.hprof"}) {
		t.Errorf("seen %v", seen)
	}
	if m, err := pfs.mountsIn(safeioPod); err != nil || !slices.Equal(m, []string{mnt}) {
		t.Errorf("mountsIn = %v, %v", m, err)
	}
	if f, _, err := pfs.open(safeioPod, "app/mnt/other.hprof"); err == nil {
		f.Close()
		t.Error("a file on the bind mount was opened")
	}
}
