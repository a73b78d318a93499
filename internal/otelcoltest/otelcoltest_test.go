package otelcoltest

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestStartReadsAFile: the real collector with a filelog receiver on one file exports its lines, in order, through
// Pipeline's file exporter, and ReadRecords reads them back; a missing output file is no records.
func TestStartReadsAFile(t *testing.T) {
	dir := t.TempDir()
	if recs, err := ReadRecords(filepath.Join(dir, "none.json")); err != nil || recs != nil {
		t.Fatalf("ReadRecords of a missing file: %v, %v", recs, err)
	}
	log := filepath.Join(dir, "app.log")
	if err := os.WriteFile(log, []byte("first line\nsecond line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Start(t, "receivers:\n  filelog/t:\n    include: ["+log+"]\n    start_at: beginning\n", []string{"filelog/t"})
	deadline := time.Now().Add(30 * time.Second)
	var recs []Record
	for len(recs) < 2 {
		if c.Exited() || time.Now().After(deadline) {
			t.Fatalf("after 30s the collector (exited: %v) exported %v", c.Exited(), recs)
		}
		time.Sleep(100 * time.Millisecond)
		var err error
		if recs, err = c.Records(); err != nil {
			t.Fatal(err)
		}
	}
	c.Stop()
	if !c.Exited() || len(recs) != 2 || recs[0].Body != "first line" || recs[1].Body != "second line" ||
		recs[0].Attrs["log.file.name"] != "app.log" {
		t.Errorf("records %+v, want the two lines in order with log.file.name app.log", recs)
	}
}
