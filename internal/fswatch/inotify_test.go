package fswatch

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"k8s.io/utils/clock"
)

func newWatcher(t *testing.T, dirs ...string) *Watcher {
	t.Helper()
	w, err := New(clock.RealClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// collect takes batches until want says it has what it waits for, or fails after 5 s; it returns the names' ops.
func collect(t *testing.T, w *Watcher, want func(map[string]Op) bool) map[string]Op {
	t.Helper()
	got := map[string]Op{}
	deadline := time.After(5 * time.Second)
	for !want(got) {
		select {
		case <-w.Ready():
		case <-deadline:
			t.Fatalf("events so far: %v", got)
		}
		b := w.Take()
		if b.Overflow || b.Errs > 0 {
			t.Fatalf("batch %+v", b)
		}
		for i, n := range b.Names {
			got[n] |= b.Ops[i]
		}
	}
	return got
}

// TestReportsOps: what happens in a watched directory is reported with its Ops (fsnotify's meanings) under the watched
// path; a watched directory that is renamed away or removed loses its watch (its events would name a path that is
// something else now), and a directory added again under its new name reports under that name.
func TestReportsOps(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	w := newWatcher(t, root, sub)
	f := filepath.Join(sub, "a.log")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f, filepath.Join(sub, "b.log")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(sub, "b.log")); err != nil {
		t.Fatal(err)
	}
	got := collect(t, w, func(m map[string]Op) bool { return m[filepath.Join(sub, "b.log")].Has(Remove) })
	if want := Create | Write | Chmod | Rename; got[f] != want {
		t.Fatalf("%s: %v, want %v", f, got[f], want)
	}
	if want := Create | Remove; got[filepath.Join(sub, "b.log")] != want {
		t.Fatalf("b.log: %v, want %v", got[filepath.Join(sub, "b.log")], want)
	}

	moved := filepath.Join(root, "moved")
	if err := os.Rename(sub, moved); err != nil {
		t.Fatal(err)
	}
	collect(t, w, func(m map[string]Op) bool {
		return m[moved].Has(Create) && m[sub].Has(Rename)
	})
	time.Sleep(2 * Coalesce) // the moved directory's own IN_MOVE_SELF, if it came in a later read
	w.Take()
	if slices.Contains(w.WatchList(), sub) {
		t.Fatalf("a directory renamed away is still watched under its old name: %v", w.WatchList())
	}
	if err := w.Add(moved); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(moved, "c.log"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	collect(t, w, func(m map[string]Op) bool { return m[filepath.Join(moved, "c.log")].Has(Create) })

	if err := os.RemoveAll(moved); err != nil {
		t.Fatal(err)
	}
	collect(t, w, func(m map[string]Op) bool { return m[moved].Has(Remove) })
	time.Sleep(2 * Coalesce)
	w.Take()
	if l := w.WatchList(); !slices.Equal(l, []string{root}) {
		t.Fatalf("watched after the removal: %v, want only %s", l, root)
	}
	if err := w.Remove(moved); err == nil {
		t.Fatal("Remove of a directory whose watch went with it: no error")
	}
	if err := w.Remove(root); err != nil {
		t.Fatal(err)
	}
	if l := w.WatchList(); len(l) != 0 {
		t.Fatalf("watched after Remove: %v", l)
	}
}

// TestEventsAreCoalesced: a file appended to every 5 ms for a second (what many pods writing look like to one
// watcher) wakes a consumer waiting on Ready about once per Coalesce, not once per write. With fsnotify's reader
// feeding the batch as each event arrived, the consumer woke for nearly every one of the 200 writes.
func TestEventsAreCoalesced(t *testing.T) {
	dir := t.TempDir()
	w := newWatcher(t, dir)
	f, err := os.Create(filepath.Join(dir, "app.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	time.Sleep(2 * Coalesce)
	w.Take()
	stop := make(chan struct{})
	wakes := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-w.Ready():
				n++
				w.Take()
			case <-stop:
				wakes <- n
				return
			}
		}
	}()
	const writes = 200
	start := time.Now()
	for range writes {
		if _, err := f.WriteString("a line\n"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	time.Sleep(2 * Coalesce)
	close(stop)
	n := <-wakes
	if limit := int(elapsed/Coalesce) + 3; n == 0 || n > limit {
		t.Fatalf("%d writes over %s woke the consumer %d times, want 1 to %d", writes, elapsed.Round(time.Millisecond), n, limit)
	}
	t.Logf("%d writes over %s: %d wake-ups", writes, elapsed.Round(time.Millisecond), n)
}
