package archiver

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRestartDoesNotWalkRetainedPodsWalkedBefore: a retained pod directory whose walk found nothing to do is marked
// in the journal, and a restarted archiver does not walk it at its first rescan (on a node keeping 20,000 of them
// that walk was half the start's CPU); one without a mark (as after the upgrade to this version) is walked, as
// before. A file that appeared in a marked one meanwhile is not lost: Archived finds it, says so, and has it
// walked and archived at once. The published pod directory never has a mark.
func TestRestartDoesNotWalkRetainedPodsWalkedBefore(t *testing.T) {
	e := newEnv(t)
	r, kept, set := startRetained(t, e, 2)
	live := ""
	ents, err := os.ReadDir(e.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if !strings.HasPrefix(ent.Name(), ".") && !set.has(ent.Name()) {
			live = ent.Name()
		}
	}
	mark := func(pod string) string { return filepath.Join(e.state, walkedDir, pod) }
	for _, pod := range kept {
		if _, err := os.Lstat(mark(pod)); err != nil {
			t.Fatalf("retained pod directory %s walked with nothing to do has no walked mark: %v", pod, err)
		}
	}
	if _, err := os.Lstat(mark(live)); err == nil {
		t.Fatalf("the published pod directory %s has a walked mark", live)
	}
	r.stop()

	marked, unmarked := kept[0], kept[1]
	if err := os.Remove(mark(unmarked)); err != nil { // as a keeplog before walked marks left it
		t.Fatal(err)
	}
	writeRandom(t, filepath.Join(e.root, marked, "app", "dumps", "while-down.hprof"), 8192, 5)
	writeRandom(t, filepath.Join(e.root, unmarked, "app", "dumps", "while-down.hprof"), 8192, 6)
	cfg := e.config()
	cfg.RescanInterval = time.Hour
	var mu sync.Mutex
	asked := map[string]int{}
	retained := func(pod string) bool {
		mu.Lock()
		asked[pod]++
		mu.Unlock()
		return set.has(pod)
	}
	r = e.start(cfg, Deps{Retained: retained})
	waitFor(t, 30*time.Second, "the unmarked retained pod directory's file to be archived (walked at the first rescan)", func() bool {
		return exists(e.archived(unmarked, "app/dumps/while-down.hprof"))
	})
	// The first rescan walked the directories in name order, the marked one first: had it walked it, its file
	// would have settled with the other's and been journalled before the other was uploaded.
	if items := r.a.journal.PodItems(marked); len(items) != 0 {
		t.Fatalf("the marked retained pod directory was walked at the first rescan: journal has %+v", items)
	}
	mu.Lock()
	if asked[marked] != 0 || asked[unmarked] != 1 || !r.a.isUnpublished(marked) {
		t.Errorf("the records were read for %d and %d times, the marked one is unpublished: %v; want 0, 1, true", asked[marked], asked[unmarked], r.a.isUnpublished(marked))
	}
	mu.Unlock()
	ok, why := r.a.Archived(marked)
	if ok || !strings.Contains(why, "app/dumps/while-down.hprof is not archived yet") {
		t.Fatalf("Archived(%s) = %v, %q with a file not journalled; want false, naming the file", marked, ok, why)
	}
	waitFor(t, 30*time.Second, "the marked pod directory's file to be archived once Archived asked", func() bool {
		return exists(e.archived(marked, "app/dumps/while-down.hprof"))
	})
	if _, err := os.Lstat(mark(marked)); err == nil {
		t.Fatal("the walked mark stayed after Archived found a file the journal did not have")
	}
}

// TestWalkedMarks: a mark survives a reopening of the journal, is written and removed only when it changes, names
// only a file in the journal's own directory, and goes when its pod directory is no longer in the root.
func TestWalkedMarks(t *testing.T) {
	dir := t.TempDir()
	j, _, err := OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, b := "ns_a_0123456789abcdef0123456789abcdef", "ns_b_0123456789abcdef0123456789abcdef"
	for _, name := range []string{a, b} {
		if err := j.SetWalked(name, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.SetWalked(a, true); err != nil { // again: no change
		t.Fatal(err)
	}
	if _, err := j.walkedPath("../items"); err == nil {
		t.Fatal("walkedPath accepted a name with a slash")
	}
	j, _, err = OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !j.Walked(a) || !j.Walked(b) {
		t.Fatalf("marks lost across a reopening: %v %v", j.Walked(a), j.Walked(b))
	}
	if err := j.KeepWalked(map[string]bool{a: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, walkedDir, b)); err == nil || j.Walked(b) {
		t.Fatal("the mark of a pod directory no longer in the root stayed")
	}
	if err := j.SetWalked(a, false); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, walkedDir)); len(ents) != 0 || j.Walked(a) {
		t.Fatalf("marks left after dropping both: %v", ents)
	}
}

// TestMarkedPodPublishedBeforeRunIsWatched: a pod directory published again just before a crash may keep its walked
// mark (the mount came, MarkPublished did not); the driver's Reconcile tells the archiver, before Run, of every
// publication still mounted, MarkPublished drops the mark at once, and the directory is taken for a published one:
// watched, its new dump found by its events alone (rescans are off). Were the mark dropped later, by the main loop,
// the first rescan would take it for a retained one without reading its record.
func TestMarkedPodPublishedBeforeRunIsWatched(t *testing.T) {
	e := newEnv(t)
	r, kept, set := startRetained(t, e, 1)
	r.stop()
	pod := kept[0]
	if !exists(filepath.Join(e.state, walkedDir, pod)) {
		t.Fatalf("no walked mark for %s", pod)
	}
	set.mu.Lock()
	set.pods[pod] = false // published again: its record says so
	set.mu.Unlock()
	cfg := e.config()
	cfg.RescanInterval = time.Hour
	r = e.startAfter(cfg, Deps{Retained: set.has}, func(a *Archiver) { a.MarkPublished(pod) })
	if exists(filepath.Join(e.state, walkedDir, pod)) {
		t.Fatal("MarkPublished left the walked mark")
	}
	waitFor(t, 30*time.Second, "the first rescan to watch the published pod directory", func() bool {
		return inotifyWatches(t) == 1+2+5 // the root, the live pod directory and app; this one, app, app/logs, app/dumps, side
	})
	if r.a.isUnpublished(pod) {
		t.Fatal("a pod directory told published before Run is taken for an unpublished one")
	}
	writeRandom(t, filepath.Join(e.root, pod, "app", "dumps", "new.hprof"), 4096, 7)
	waitFor(t, 30*time.Second, "the new dump to be archived through its events", func() bool {
		return exists(e.archived(pod, "app/dumps/new.hprof"))
	})
}
