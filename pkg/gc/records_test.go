package gc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSteadyPassReadsOnlyWhatChanged: after the first pass, a pass reads the records of the volumes the store
// said changed and no others (a pass re-reading 10,000 volumes' records every minute was half of an idle node's
// CPU), and still acts on a change made through the store at once: a directory unpublished since is retained,
// and once expired it is deleted. Reads are counted from /proc/self/io (read syscalls of this process).
func TestSteadyPassReadsOnlyWhatChanged(t *testing.T) {
	f := newFixture(t)
	f.cfg.Policy.RetainFor = time.Hour
	const n = 200
	var targets []string
	for i := range n {
		id := fmt.Sprintf("v1:node-a:pvc-%d", i)
		f.volume(id, "persistent", fmt.Sprintf("pvc-%d", i), nil)
		_, target := f.podDir(id, 10)
		targets = append(targets, target)
	}
	g := f.gc()
	f.pass(g) // the first pass reads everything
	before := readSyscalls(t)
	res := f.pass(g)
	if reads := readSyscalls(t) - before; reads > n/4 {
		t.Errorf("a pass with nothing changed made %d read syscalls for %d volumes: the records were read again", reads, n)
	}
	if res.Retained != 0 {
		t.Fatalf("retained %d, want 0 (all published)", res.Retained)
	}
	f.unpublish("v1:node-a:pvc-7", targets[7])
	if res := f.pass(g); res.Retained != 1 {
		t.Fatalf("after an unpublish through the store: retained %d, want 1", res.Retained)
	}
	f.clk.Step(time.Hour)
	if res := f.pass(g); len(res.Deleted) != 1 {
		t.Fatalf("after its retention: deleted %v, want the unpublished directory", res.Deleted)
	}
}

// readSyscalls is this process's read syscalls so far (syscr of /proc/self/io).
func readSyscalls(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no syscr in /proc/self/io")
	return 0
}
