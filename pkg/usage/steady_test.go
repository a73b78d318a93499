package usage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keeplog/keeplog/internal/fstest"
	"github.com/keeplog/keeplog/pkg/api"
)

// TestTrashRenamesDoNotWedgeTheWatcher is the GC's own churn under a running tracker: published pod directories
// (with watched sub-directories) renamed into the trash and removed while new ones appear. fsnotify sends on its
// channels while holding the mutex that Add needs; the tracker's reader took the tracker's lock to mark a path dirty
// while the main loop added watches with that lock held, and the two waited for each other for good. Afterwards
// the tracker must still see a new file (walks are off: only events and the store's notifications can find it), and
// stop within a minute; a tracker that does not is reported wedged (the test does not wait for it).
func TestTrashRenamesDoNotWedgeTheWatcher(t *testing.T) {
	f := newFixture(t, "")
	tr, err := New(Config{UpdateInterval: 100 * time.Millisecond, WalkInterval: time.Hour}, Deps{Store: f.st, Clock: fixtureClock{f: f}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(time.Minute):
			t.Errorf("the tracker did not stop within a minute after the churn: wedged")
		}
	}()
	churn := 10 * time.Second
	if testing.Short() {
		churn = 4 * time.Second
	}
	var stops []func()
	for i := range 4 {
		stops = append(stops, busyWriter(t, f, i))
	}
	n := trashChurn(t, f, churn)
	for _, stop := range stops {
		stop()
	}
	t.Logf("%d published pod directories renamed into the trash and removed", n)
	dirs := f.volume("vol-after", 1<<30, nil, "after")
	writeFile(t, filepath.Join(dirs[0], "app", "late.log"), 1<<20)
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, ok := statusWithin(t, tr, "vol-after", 10*time.Second)
		if ok && s.Bytes >= 1<<20 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a file written after the churn is not seen within 30s (status %+v, known %v): the tracker is wedged", s, ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// statusWithin asks for a volume's status, failing the test (without waiting any longer) when the tracker's lock is
// not free within d: a wedged loop holds it.
func statusWithin(t *testing.T, tr *Tracker, id string, d time.Duration) (Status, bool) {
	type answer struct {
		s  Status
		ok bool
	}
	ch := make(chan answer, 1)
	go func() {
		s, ok := tr.Status(id)
		ch <- answer{s, ok}
	}()
	select {
	case a := <-ch:
		return a.s, a.ok
	case <-time.After(d):
		t.Fatalf("Status(%s) did not return within %s: the tracker is wedged holding its lock", id, d)
		return Status{}, false
	}
}

// trashChurn publishes pod directories with sub-directories, and moves each into the trash and removes it once
// the tracker had a moment to watch it, as the garbage collector does, for d; it returns how many.
func trashChurn(t *testing.T, f *fixture, d time.Duration) int {
	return fstest.TrashChurn(t, filepath.Join(f.st.Root(), api.KeeplogDir, "trash"), d, func(i int) (string, error) {
		dirs := f.volume(fmt.Sprintf("vol-%d", i), 1<<30, nil, fmt.Sprintf("p%d", i))
		// Sub-directories appear once the pod directory is watched: the tracker adds their watches while it
		// applies events.
		for _, sub := range []string{"app", "app/a", "app/a/b", "app/c", "side", "side/d", "side/d/e"} {
			time.Sleep(time.Millisecond)
			if err := os.Mkdir(filepath.Join(dirs[0], sub), 0o755); err != nil {
				return "", err
			}
		}
		return dirs[0], nil
	})
}

// busyWriter keeps events coming from one published pod directory until the returned function is called: files
// created, written and removed without a pause, and directories (which the tracker watches as they appear) renamed
// into the trash and removed, each rename a watch fsnotify drops while holding its mutex.
func busyWriter(t *testing.T, f *fixture, n int) (stop func()) {
	dirs := f.volume(fmt.Sprintf("vol-busy%d", n), 1<<40, nil, fmt.Sprintf("busy%d", n))
	trash := filepath.Join(f.st.Root(), api.KeeplogDir, "trash")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			p := filepath.Join(dirs[0], fmt.Sprintf("f%d", i%64))
			_ = os.WriteFile(p, []byte("x"), 0o644)
			_ = os.Remove(p)
			d := filepath.Join(dirs[0], fmt.Sprintf("d%d", i))
			_ = os.MkdirAll(filepath.Join(d, "a", "b"), 0o755)
			if i > 0 {
				prev := filepath.Join(dirs[0], fmt.Sprintf("d%d", i-1))
				gone := filepath.Join(trash, fmt.Sprintf("busy%d-d%d", n, i-1))
				if os.Rename(prev, gone) == nil {
					_ = os.RemoveAll(gone)
				}
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	return func() { cancel(); <-done }
}

// TestKeeplogNeverWatchesItself: with volumes created, published and unpublished, nothing keeplog writes is
// watched: not its records under <root>/.keeplog (three watches per volume there, ~30,000 at 10,000 volumes, before
// the store's notification replaced them), nor a pod directory's own .keeplog; and the volumes are still known at
// once, from the store's notification.
func TestKeeplogNeverWatchesItself(t *testing.T) {
	f := newFixture(t, "")
	f.start(Config{}, nil)
	dirs := f.volume("vol-a", 1<<30, nil, "p1", "p2")
	writeFile(t, filepath.Join(dirs[0], api.KeeplogDir, "pod.yaml"), 100)
	writeFile(t, filepath.Join(dirs[0], "app", "a.log"), 5000)
	f.waitUsage(t, "vol-a", du(t, dirs...))
	if err := f.st.RemoveTarget("vol-a", "/target/vol-a/p2"); err != nil {
		t.Fatal(err)
	}
	f.volume("vol-b", 1<<30, nil, "p3")
	f.tr.flush(f.ctx)
	if _, ok := f.tr.Status("vol-b"); !ok {
		t.Fatal("a new volume is not known after a flush")
	}
	own := []string{filepath.Join(f.st.Root(), api.KeeplogDir), filepath.Join(dirs[0], api.KeeplogDir)}
	for _, w := range f.tr.w.WatchList() {
		for _, o := range own {
			if w == o || strings.HasPrefix(w, o+"/") {
				t.Errorf("keeplog's own %s is watched", w)
			}
		}
	}
}
