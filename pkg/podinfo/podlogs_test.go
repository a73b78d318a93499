package podinfo

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/keeplog/keeplog/pkg/api"
)

// treeDir is <root>/.pods/<dir>/app for the logEnv's pod.
func (e *logEnv) treeDir() string {
	return filepath.Join(filepath.Dir(e.podDir), api.PodLogsDir, testRef.DirName(), "app")
}

func inode(t *testing.T, path string) (uint64, uint64) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Ino, uint64(st.Nlink)
}

func dirNames(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// assertLinked: the tree holds exactly want, each the copy's own inode (a hard link, two names), never a second copy.
func (e *logEnv) assertLinked(want string) {
	e.t.Helper()
	if got := dirNames(e.t, e.treeDir()); got != want {
		e.t.Fatalf("kubelet-layout tree has %q, want %q", got, want)
	}
	for _, n := range strings.Fields(want) {
		ti, tl := inode(e.t, filepath.Join(e.treeDir(), n))
		ci, _ := inode(e.t, filepath.Join(e.dst, n))
		if ti != ci || tl != 2 {
			e.t.Errorf("%s: tree inode %d (%d links), copy inode %d: want the same inode with 2 links", n, ti, tl, ci)
		}
	}
}

func TestCopyLinksCopiesIntoKubeletLayoutTree(t *testing.T) {
	e := newLogEnv(t)
	e.appendSrc("0.log", "hello")
	e.copy()
	e.assertLinked("0.log")
	for _, d := range []string{filepath.Dir(filepath.Dir(e.treeDir())), filepath.Dir(e.treeDir()), e.treeDir()} {
		if uid, gid, mode := statOf(t, d); uid != 0 || gid != 0 || mode.Perm() != 0o755 || !mode.IsDir() {
			t.Errorf("%s is %d:%d %v, want root:root 0755", d, uid, gid, mode)
		}
	}
	before, _ := inode(t, filepath.Join(e.treeDir(), "0.log"))
	e.appendSrc("0.log", "more")
	e.copy()
	e.assertLinked("0.log")
	if after, _ := inode(t, filepath.Join(e.treeDir(), "0.log")); after != before {
		t.Errorf("an append replaced the link (inode %d -> %d): a collector would read the file again", before, after)
	}
	if got, want := readFile(t, filepath.Join(e.treeDir(), "0.log")), readFile(t, filepath.Join(e.src, "0.log")); got != want {
		t.Errorf("tree content %q, want %q", got, want)
	}
}

func TestCopyLinksFollowRotationAndKeepKubeletNames(t *testing.T) {
	e := newLogEnv(t)
	e.appendSrc("0.log", "a1")
	e.copy()
	first, _ := inode(t, filepath.Join(e.treeDir(), "0.log"))
	rotated := "0.log.20300102-030405"
	if err := os.Rename(filepath.Join(e.src, "0.log"), filepath.Join(e.src, rotated)); err != nil {
		t.Fatal(err)
	}
	e.appendSrc("0.log", "b1")
	e.copy()
	e.assertLinked("0.log " + rotated)
	if got, _ := inode(t, filepath.Join(e.treeDir(), rotated)); got != first {
		t.Errorf("the rotated name is inode %d, want the first 0.log's %d (what a collector already read)", got, first)
	}
	gzipFile(t, filepath.Join(e.src, rotated))
	e.copy()
	e.assertLinked("0.log " + rotated + ".gz")
}

func TestCopyLinksOnlyKubeletNamedRegularFiles(t *testing.T) {
	e := newLogEnv(t)
	e.appendSrc("0.log", "a1")
	e.copy()
	outside := filepath.Join(t.TempDir(), "secret")
	writeFile(t, outside, "not a log")
	// Planted in the copies (by a root pod): a symlink with a kubelet name, a partial copy, a stray file.
	if err := os.Symlink(outside, filepath.Join(e.dst, "7.log")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(e.dst, "0.log.partial-123"), "start")
	writeFile(t, filepath.Join(e.dst, "notes.txt"), "x")
	// A leftover in the tree (a name the copies no longer have).
	writeFile(t, filepath.Join(e.treeDir(), "3.log"), "stale")
	// The copy loop may report the planted entries; the link step must not follow or link any of them.
	_, _ = e.c.Copy(t.Context(), e.podDir, testRef)
	e.assertLinked("0.log")
	if data := readFile(t, outside); data != "not a log" {
		t.Errorf("symlink target changed: %q", data)
	}
}

func TestCopyLinksAlsoWhenKubeletsFilesAreGone(t *testing.T) {
	e := newLogEnv(t)
	e.appendSrc("0.log", "a1")
	if _, err := e.c.copyAll(t.Context(), e.podDir, testRef); err != nil { // copied, never linked (an older keeplog)
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Dir(e.src)); err != nil {
		t.Fatal(err)
	}
	st := e.copy()
	if !st.SourceMissing {
		t.Fatalf("stats %+v, want SourceMissing", st)
	}
	e.assertLinked("0.log")
}
