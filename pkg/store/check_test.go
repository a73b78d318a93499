package store

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/keeplog/keeplog/pkg/api"
)

// TestCheckReadsNoRecord: the health check answers from the records' directory, not from every record: a record that
// does not parse makes ListVolumes fail but not Check (so it does not read them: 10,000 at every probe), while a
// root whose records' directory is gone fails it.
func TestCheckReadsNoRecord(t *testing.T) {
	s, root := openStore(t)
	if err := s.Check(); err != nil {
		t.Fatalf("empty root: %v", err)
	}
	for _, id := range []string{"v1:n:pvc-a", "v1:n:pvc-b"} {
		if _, err := s.CreateVolume(&Volume{ID: id, Kind: Persistent, Node: "n"}); err != nil {
			t.Fatal(err)
		}
	}
	rec := filepath.Join(root, api.KeeplogDir, api.VolumesDir, "v1:n:pvc-b", "volume.json")
	if err := os.WriteFile(rec, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListVolumes(); err == nil {
		t.Fatal("ListVolumes read the broken record without an error: the test does not break it")
	}
	if err := s.Check(); err != nil {
		t.Errorf("Check with a broken record: %v; it must not read the records", err)
	}
	if err := os.RemoveAll(filepath.Join(root, api.KeeplogDir, api.VolumesDir)); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err == nil {
		t.Error("Check passed without the records' directory")
	}
}
