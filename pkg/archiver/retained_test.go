package archiver

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keeplog/keeplog/internal/fstest"
)

// inotifyWatches counts the inotify watches this process holds (the kernel's list): the archiver's watcher is the
// test binary's only inotify instance.
func inotifyWatches(t testing.TB) int {
	t.Helper()
	n, err := fstest.InotifyWatches(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// retainedSet is Deps.Retained over a set the test changes.
type retainedSet struct {
	mu   sync.Mutex
	pods map[string]bool
}

func (r *retainedSet) has(pod string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pods[pod]
}

// retainedRoot makes a published pod directory with a dump in it and n retained ones, each with three
// sub-directories; it returns the published one and the retained ones.
func retainedRoot(t *testing.T, e *env, n int) (string, []string, *retainedSet) {
	t.Helper()
	set := &retainedSet{pods: map[string]bool{}}
	live := e.pod("ns", "live")
	writeRandom(t, filepath.Join(e.root, live, "app", "first.hprof"), 4096, 1)
	var kept []string
	for i := range n {
		pod := e.pod("ns", "kept"+string(rune('a'+i)))
		for _, sub := range []string{"app/logs", "app/dumps", "side"} {
			if err := os.MkdirAll(filepath.Join(e.root, pod, sub), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		set.pods[pod] = true
		kept = append(kept, pod)
	}
	return live, kept, set
}

// startRetained runs an archiver (rescans off) over retainedRoot's pod directories, the retained ones told by
// Deps.Retained, and waits until its first rescan is over (the published pod's dump is archived).
func startRetained(t *testing.T, e *env, n int) (*running, []string, *retainedSet) {
	t.Helper()
	live, kept, set := retainedRoot(t, e, n)
	cfg := e.config()
	cfg.RescanInterval = time.Hour
	r := e.start(cfg, Deps{Retained: set.has})
	waitFor(t, 30*time.Second, "the published pod's dump to be archived (the first rescan is over)", func() bool {
		return exists(e.archived(live, "app/first.hprof"))
	})
	return r, kept, set
}

// TestRetainedPodDirectoriesAreNotWatched: at start the records say which pod directories are unpublished, and
// none of their directories is watched (the kernel's own list of watches): a node's thousands of retained
// directories cost no inotify watch and no event. Published again, one is watched again and a dump written in it
// is found by its events alone (rescans are off); unpublished, its watches go. Before, every directory of every
// retained pod directory was watched: 1 + 2 + 4·12 watches here instead of 1 + 2.
func TestRetainedPodDirectoriesAreNotWatched(t *testing.T) {
	e := newEnv(t)
	r, kept, set := startRetained(t, e, 12)
	base := 1 + 2 // the root, the published pod directory and its app/
	if got := inotifyWatches(t); got != base {
		t.Fatalf("%d inotify watches with 12 retained pod directories, want %d (the root and the published pod's 2 directories)", got, base)
	}

	again := kept[3]
	set.mu.Lock()
	delete(set.pods, again)
	set.mu.Unlock()
	r.a.MarkPublished(filepath.Join(e.root, again))
	waitFor(t, 30*time.Second, "the pod directory published again to be watched", func() bool {
		return inotifyWatches(t) == base+5 // the pod directory, app, app/logs, app/dumps, side
	})
	writeRandom(t, filepath.Join(e.root, again, "app", "dumps", "heap.hprof"), 4096, 2)
	waitFor(t, 30*time.Second, "the dump in the pod directory published again to be archived", func() bool {
		return exists(e.archived(again, "app/dumps/heap.hprof"))
	})

	r.a.MarkUnpublished(filepath.Join(e.root, again))
	waitFor(t, 30*time.Second, "the unpublished pod directory's watches to go", func() bool {
		return inotifyWatches(t) == base
	})
}

// TestFileInRetainedPodIsFoundWhenArchivedIsAsked: a retained pod directory is not watched, so a file that
// appears in it later (copied in by an operator, a late stdout copy) is not seen by events; when the garbage
// collector asks Archived it is "not archived yet" — never deleted — and that question has the archiver walk the
// directory at once, so it is archived without waiting for the hourly walk (rescans are off here).
func TestFileInRetainedPodIsFoundWhenArchivedIsAsked(t *testing.T) {
	e := newEnv(t)
	r, kept, _ := startRetained(t, e, 2)
	pod := kept[1]
	if ok, why := r.a.Archived(pod); !ok {
		t.Fatalf("an empty retained pod directory is not archived: %s", why)
	}
	writeRandom(t, filepath.Join(e.root, pod, "app", "dumps", "late.hprof"), 8192, 3)
	ok, why := r.a.Archived(pod)
	if ok || !strings.Contains(why, "app/dumps/late.hprof is not archived yet") {
		t.Fatalf("Archived = %v, %q with a file not journalled; want false, naming the file", ok, why)
	}
	waitFor(t, 30*time.Second, "the late file to be archived", func() bool {
		return exists(e.archived(pod, "app/dumps/late.hprof"))
	})
	waitFor(t, 30*time.Second, "the retained pod directory to be archived", func() bool {
		ok, _ := r.a.Archived(pod)
		return ok
	})
	if got := fileSHA(t, e.archived(pod, "app/dumps/late.hprof")); got != fileSHA(t, filepath.Join(e.root, pod, "app", "dumps", "late.hprof")) {
		t.Fatalf("archived copy's sha256 %s differs from the file's", got)
	}
}

// TestWritesToFilesMatchingNoPatternCostNoLook: an application's log written a line at a time (thousands of
// writes) is not looked at: a write never makes a directory or a new name, and gc.log matches no pattern, so the
// event needs no syscall. Before, each batch of events opened the file's directory (lstat goes through an O_PATH
// walk of the pod directory) and read the pod's policy; the kernel counts those opens. A dump written in the same
// directory afterwards is still found by its events.
func TestWritesToFilesMatchingNoPatternCostNoLook(t *testing.T) {
	e := newEnv(t)
	pod := e.pod("ns", "chatty")
	app := filepath.Join(e.root, pod, "app")
	log, err := os.Create(filepath.Join(app, "gc.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cfg := e.config()
	cfg.RescanInterval = time.Hour
	e.start(cfg, Deps{})
	waitFor(t, 30*time.Second, "the pod directory to be watched", func() bool { return inotifyWatches(t) == 3 })
	opens := fstest.OpenWatch(t, app)
	for i := range 2000 {
		if _, err := log.WriteString("[gc] pause young " + strconv.Itoa(i) + "\n"); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			time.Sleep(20 * time.Millisecond) // batches, as a real application's lines come
		}
	}
	time.Sleep(time.Second)
	if fstest.Opened(t, opens) {
		t.Fatal("the archiver opened the log's directory for writes to a file that matches no pattern")
	}
	writeRandom(t, filepath.Join(app, "heap.hprof"), 4096, 7)
	waitFor(t, 30*time.Second, "a dump written afterwards to be archived", func() bool {
		return exists(e.archived(pod, "app/heap.hprof"))
	})
}
