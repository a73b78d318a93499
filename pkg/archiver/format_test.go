package archiver

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keeplog/keeplog/pkg/store"
)

// TestJournalRefusesANewerFormat: a journal entry a newer keeplog wrote (after a rollback) stops the journal from
// opening with ErrNewerFormat naming the file, instead of being read without the fields this binary does not know
// (without the format check the item below loads as "done") or moved aside as corrupt (its file would then be
// uploaded again). Entries written now carry the format; entries from before formats were numbered still load.
func TestJournalRefusesANewerFormat(t *testing.T) {
	dir := t.TempDir()
	j, _, err := OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	it := Item{ID: itemID("ns_p_1", "app/a.hprof", 1, 100, 5), PodDir: "ns_p_1", Rel: "app/a.hprof", Ino: 1, Size: 100,
		MtimeNs: 5, State: StateDone, QueuedAt: time.Unix(1700000000, 0)}
	if _, err := j.Put(it, "/base/a.hprof"); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(dir, "items", it.ID+".json")
	data, err := os.ReadFile(rec)
	if err != nil || !strings.Contains(string(data), `"format": 1`) {
		t.Fatalf("journal item without the format: %s %v", data, err)
	}
	newer := strings.Replace(string(data), `"format": 1`, `"format": 2, "verification": {"pending": true}`, 1)
	if err := os.WriteFile(rec, []byte(newer), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenJournal(dir); !errors.Is(err, store.ErrNewerFormat) || !strings.Contains(err.Error(), rec) {
		t.Fatalf("OpenJournal over a newer entry: %v, want ErrNewerFormat naming %s", err, rec)
	}
	if _, err := os.Stat(rec); err != nil {
		t.Errorf("the newer entry was not left in place: %v", err)
	}
	legacy := strings.Replace(string(data), `"format": 1,`, "", 1)
	if err := os.WriteFile(rec, []byte(legacy), 0o600); err != nil {
		t.Fatal(err)
	}
	j2, warns, err := OpenJournal(dir)
	if err != nil || len(warns) != 0 {
		t.Fatalf("journal with an entry from before formats: %v %v", err, warns)
	}
	if got, ok := j2.Get(it.ID); !ok || got.State != StateDone {
		t.Errorf("legacy entry: %+v %v", got, ok)
	}
}
