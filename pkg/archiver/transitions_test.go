package archiver

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestJournalTransitionsRefuseIllegalChanges tries every transition from every state the journal can hold an
// item in (or none) to every state, and asserts exactly the state machine's set of (from, to) pairs goes through;
// every other is refused with an error naming the item and both states, and leaves the journal's entry (its file
// too) and the caller's item as they were.
func TestJournalTransitionsRefuseIllegalChanges(t *testing.T) {
	const q, u, d, f, s, n = StateQueued, StateUploading, StateDone, StateFailed, StateSkipped, stateNew
	states := []ItemState{n, q, u, d, f, s}
	now := time.Unix(1700000000, 0)
	boom := errors.New("boom")
	twin := Item{ID: "twin", Remote: "/base/a.hprof", SHA256: "abc", State: d}
	type call func(j *Journal, it *Item) (Item, error)
	ops := []struct {
		name string
		to   []ItemState // the states the call can aim at
		call func(to ItemState) call
		want map[[2]ItemState]bool // the (from, to) pairs the state machine allows
	}{
		{"Queue", []ItemState{q, u, d, f, s}, func(to ItemState) call {
			return func(j *Journal, it *Item) (Item, error) { it.State = to; return j.Queue(*it, "/base/a.hprof") }
		}, map[[2]ItemState]bool{{n, q}: true, {n, s}: true, {n, f}: true}},
		{"Start", []ItemState{u}, func(ItemState) call {
			return func(j *Journal, it *Item) (Item, error) { return j.Start(*it, now) }
		}, map[[2]ItemState]bool{{q, u}: true, {u, u}: true}},
		{"Progress", []ItemState{u}, func(ItemState) call {
			return func(j *Journal, it *Item) (Item, error) { return j.Progress(*it, &Progress{Raw: 1, Stored: 1}) }
		}, map[[2]ItemState]bool{{u, u}: true}},
		{"Done", []ItemState{d}, func(ItemState) call {
			return func(j *Journal, it *Item) (Item, error) { return j.Done(*it, uploaded{sha256: "abc"}, now) }
		}, map[[2]ItemState]bool{{u, d}: true}},
		{"SameContent", []ItemState{d}, func(ItemState) call {
			return func(j *Journal, it *Item) (Item, error) { return j.SameContent(*it, twin, "abc", now) }
		}, map[[2]ItemState]bool{{q, d}: true, {u, d}: true}},
		{"Fail", []ItemState{f}, func(ItemState) call {
			return func(j *Journal, it *Item) (Item, error) { return j.Fail(*it, boom, now) }
		}, map[[2]ItemState]bool{{q, f}: true, {u, f}: true}},
		{"Retry", []ItemState{q}, func(ItemState) call {
			return func(j *Journal, it *Item) (Item, error) { return j.Retry(*it, boom, now) }
		}, map[[2]ItemState]bool{{q, q}: true, {u, q}: true}},
		{"Deleted", []ItemState{d}, func(ItemState) call {
			return func(j *Journal, it *Item) (Item, error) { return j.Deleted(*it, true, "", now) }
		}, map[[2]ItemState]bool{{d, d}: true}},
	}
	allowed := map[[2]ItemState]bool{}
	for _, o := range ops {
		for _, from := range states {
			for _, to := range o.to {
				ok := tryTransition(t, o.name, from, to, o.call(to))
				if ok != o.want[[2]ItemState{from, to}] {
					t.Errorf("%s from %s to %s: went through %v, want %v", o.name, from, to, ok, !ok)
				}
				if ok {
					allowed[[2]ItemState{from, to}] = true
				}
			}
		}
	}
	// The state machine as a whole: a terminal item never changes state, nothing is queued twice.
	want := map[[2]ItemState]bool{{n, q}: true, {n, s}: true, {n, f}: true, {q, u}: true, {u, u}: true,
		{u, d}: true, {q, d}: true, {q, f}: true, {u, f}: true, {q, q}: true, {u, q}: true, {d, d}: true}
	if !reflect.DeepEqual(allowed, want) {
		t.Errorf("allowed (from, to) pairs %v, want %v", allowed, want)
	}
}

// tryTransition journals an item in state from (none for stateNew), calls c, and says whether it went through;
// a refusal is checked to have changed nothing.
func tryTransition(t *testing.T, name string, from, to ItemState, c func(*Journal, *Item) (Item, error)) bool {
	t.Helper()
	dir := t.TempDir()
	j, _, err := OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	it := Item{ID: "0123456789abcdef0123456789abcdef", PodDir: "ns_p_1", Rel: "app/a.hprof", Ino: 7, Size: 100,
		State: from, Attempts: 1, Error: "before", QueuedAt: time.Unix(1600000000, 0)}
	file := filepath.Join(dir, "items", it.ID+".json")
	var before []byte
	if from != stateNew {
		if it, err = j.Put(it, "/base/a.hprof"); err != nil {
			t.Fatal(err)
		}
		if before, err = os.ReadFile(file); err != nil {
			t.Fatal(err)
		}
	}
	stored, _ := j.Get(it.ID)
	got, err := c(j, &it) // Queue sets the state it aims at in it
	if err == nil {
		if cur, ok := j.Get(it.ID); !ok || cur.State != to || got.State != to {
			t.Errorf("%s from %s to %s: journalled %v (%s), returned %s", name, from, to, ok, cur.State, got.State)
		}
		return true
	}
	if !errors.Is(err, errIllegalTransition) {
		t.Fatalf("%s from %s to %s: %v, want a refusal", name, from, to, err)
	}
	for _, w := range []string{it.ID, "from " + string(from), "to " + string(to)} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s from %s to %s: error %q does not name %q", name, from, to, err, w)
		}
	}
	if !reflect.DeepEqual(got, it) {
		t.Errorf("%s from %s to %s refused: returned %+v, want the item unchanged %+v", name, from, to, got, it)
	}
	if cur, _ := j.Get(it.ID); !reflect.DeepEqual(cur, stored) {
		t.Errorf("%s from %s to %s refused: journal holds %+v, want %+v", name, from, to, cur, stored)
	}
	after, rerr := os.ReadFile(file)
	if from == stateNew && !errors.Is(rerr, os.ErrNotExist) {
		t.Errorf("%s of a new item to %s refused: its journal file exists (%v)", name, to, rerr)
	}
	if from != stateNew && string(after) != string(before) {
		t.Errorf("%s from %s to %s refused: journal file changed:\n%s\nwas\n%s", name, from, to, after, before)
	}
	return false
}

// A done item the main loop pruned (its pod directory is gone) while a worker deleted its file is not written
// back into the journal by the worker's record of the deletion: the refusal is logged, the item stays gone.
func TestPrunedItemIsNotJournalledAgain(t *testing.T) {
	root := t.TempDir()
	a, err := New(Config{NodeName: "n", Target: Target{BaseDir: "/archive"}},
		Deps{Root: root, StateDir: filepath.Join(root, ".keeplog", "archiver"), Dialer: dialerFunc(nil), Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	pod := "ns_pod_0123456789abcdef0123456789abcdef"
	it, err := a.journal.Put(Item{ID: itemID(pod, "app/a.hprof", 7, 1, 1), PodDir: pod, Rel: "app/a.hprof", Ino: 7,
		Size: 1, MtimeNs: 1, State: StateDone, DeleteAfterUpload: true}, "/archive/a.hprof")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.journal.Remove(it.ID); err != nil {
		t.Fatal(err)
	}
	a.deleteLocal(it) // the file is gone: recorded as deleted, which the journal refuses for an item it has not
	if got, ok := a.journal.Get(it.ID); ok {
		t.Fatalf("a pruned item is journalled again: %+v", got)
	}
	if _, err := os.Stat(filepath.Join(root, ".keeplog", "archiver", "items", it.ID+".json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a pruned item's journal file: %v", err)
	}
}
