package fstest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keeplog/keeplog/internal/fswatch"
)

// TestTempWatchCountsOverlaps: two temporaries live at once are a peak of 2; one after the other (and one created
// and renamed away within one batch) a peak of 1; files that are not temporaries are not counted.
func TestTempWatchCountsOverlaps(t *testing.T) {
	dir := t.TempDir()
	tw, err := WatchTemps([]string{dir}, func(base string) bool { return strings.Contains(base, ".tmp-") })
	if err != nil {
		t.Fatal(err)
	}
	step := func(f func(string, string) error, from, to string) {
		t.Helper()
		if err := f(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * fswatch.Coalesce) // the next step in a later batch
	}
	create := func(p, _ string) error { return os.WriteFile(p, []byte("x"), 0o644) }
	step(create, "a.tmp-1", "")
	step(create, "other", "") // not a temporary
	step(os.Rename, "a.tmp-1", "a")
	if err := create(filepath.Join(dir, "c.tmp-3"), ""); err != nil { // created and gone in one batch
		t.Fatal(err)
	}
	step(os.Rename, "c.tmp-3", "c")
	step(create, "b.tmp-2", "")
	step(os.Rename, "b.tmp-2", "b")
	if rep := tw.Stop(); rep.Peak != 1 || rep.Seen != 3 || rep.Lost {
		t.Fatalf("one after the other: %+v, want peak 1 of 3", rep)
	}

	tw, err = WatchTemps([]string{dir}, func(base string) bool { return strings.Contains(base, ".tmp-") })
	if err != nil {
		t.Fatal(err)
	}
	step(create, "d.tmp-4", "")
	step(create, "e.tmp-5", "")
	step(os.Rename, "d.tmp-4", "d")
	step(func(p, _ string) error { return os.Remove(p) }, "e.tmp-5", "")
	if rep := tw.Stop(); rep.Peak != 2 || rep.Seen != 2 || len(rep.Overlaps) != 1 || rep.Lost {
		t.Fatalf("overlapping: %+v, want peak 2 of 2", rep)
	}
}
