package archiver

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Touching, renaming and hard-linking an archived dump sends nothing: each new name is journalled done, pointing
// at the archived copy (sameAs in the status file), and the pod directory stays archived. The same inode and size
// with other bytes is a new version and is uploaded. (Before, each touch or rename was a new upload.)
func TestSameContentIsNotSentAgain(t *testing.T) {
	e := newEnv(t)
	pod := e.pod("ns", "dedupe")
	dir := filepath.Join(e.root, pod, "app")
	heap := filepath.Join(dir, "heap.hprof")
	writeRandom(t, heap, 12<<20, 9)
	r := e.start(e.config(), Deps{})
	archived := func(what string) {
		t.Helper()
		waitFor(t, time.Minute, what, func() bool { ok, _ := r.a.Archived(pod); return ok })
	}
	archived("the dump archived")
	files := e.serverFiles()
	sent := metricValue(t, r.a.m.bytes)

	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(heap, later, later); err != nil {
		t.Fatal(err)
	}
	archived("the touched dump recorded")
	moved := filepath.Join(dir, "moved.hprof")
	if err := os.Rename(heap, moved); err != nil {
		t.Fatal(err)
	}
	archived("the renamed dump recorded")
	if err := os.Link(moved, filepath.Join(dir, "link.hprof")); err != nil {
		t.Fatal(err)
	}
	archived("the hard link recorded")
	if got := e.serverFiles(); !slices.Equal(got, files) {
		t.Fatalf("server files %v, want still %v", got, files)
	}
	if b := metricValue(t, r.a.m.bytes); b != sent {
		t.Fatalf("%v bytes sent after touch, rename and link; want %v (none more)", b-sent, 0)
	}
	if n := metricValue(t, r.a.m.uploads.WithLabelValues(ResultSameContent)); n < 3 {
		t.Fatalf("uploads_total{same_content} = %v, want >= 3", n)
	}
	waitFor(t, 10*time.Second, "status says done, same as heap.hprof", func() bool {
		ps := readStatus(t, e.root, pod)
		for _, rel := range []string{"app/moved.hprof", "app/link.hprof"} {
			fs := statusOf(ps, rel)
			if len(fs) != 1 || fs[0].State != string(StateDone) || fs[0].SameAs != "app/heap.hprof" {
				return false
			}
		}
		return true
	})

	// Other bytes in the same inode, same size: a new version.
	f, err := os.OpenFile(moved, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("changed"), 1000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	waitFor(t, time.Minute, "the changed dump uploaded", func() bool { return len(e.serverFiles()) > len(files) })
	archived("the changed dump archived")
}
