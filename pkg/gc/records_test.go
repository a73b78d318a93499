package gc

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/keeplog/keeplog/pkg/api"
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

// TestCacheKeepsOnlyWhatAPassReads: the records kept between passes hold the parameters policy.Resolve reads and not
// the CO's csi.storage.k8s.io/* ones, the targets' pod directories and not the target records, and pod references
// whose strings are the directory name's own bytes; and the pass still decides with them (the volume's retainFor).
func TestCacheKeepsOnlyWhatAPassReads(t *testing.T) {
	f := newFixture(t)
	const id = "v1:node-a:pvc-1"
	f.volume(id, "persistent", "pvc-1", map[string]string{api.ParamRetainFor: "2h",
		api.COParameterPrefix + "pv/name": "pvc-1", api.COParameterPrefix + "pvc/name": "data", api.COParameterPrefix + "pvc/namespace": "ns"})
	published, _ := f.podDir(id, 10)
	retained, target := f.podDir(id, 10)
	f.unpublish(id, target)
	g := f.gc()
	if res := f.pass(g); res.Retained != 1 || len(res.Deleted) != 0 {
		t.Fatalf("first pass: retained %d, deleted %v; want the unpublished directory retained", res.Retained, res.Deleted)
	}
	r := g.cache.vols[id]
	if r == nil {
		t.Fatal("no cached records")
	}
	if !maps.Equal(r.v.Parameters, map[string]string{api.ParamRetainFor: "2h"}) {
		t.Errorf("cached parameters %v, want only retainFor", r.v.Parameters)
	}
	if !slices.Equal(r.inUse, []string{published}) {
		t.Errorf("cached targets %v, want the published directory %s", r.inUse, published)
	}
	if len(r.dirs) != 2 {
		t.Fatalf("cached %d pod directories, want 2", len(r.dirs))
	}
	for _, pd := range r.dirs {
		if pd.Pod == nil || pd.Pod.DirName() != pd.Dir {
			t.Fatalf("cached pod %+v of %s", pd.Pod, pd.Dir)
		}
		start := uintptr(unsafe.Pointer(unsafe.StringData(pd.Dir)))
		for _, s := range []string{pd.Pod.Namespace, pd.Pod.Name, pd.Pod.UID} {
			if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); p < start || p >= start+uintptr(len(pd.Dir)) {
				t.Errorf("%s: pod field %q is a copy, not the directory name's bytes", pd.Dir, s)
			}
		}
	}
	f.clk.Step(2*time.Hour - time.Minute)
	if res := f.pass(g); len(res.Deleted) != 0 {
		t.Fatalf("before the volume's retainFor: deleted %v", res.Deleted)
	}
	f.clk.Step(time.Minute)
	if res := f.pass(g); !slices.Equal(deletedDirs(res), []string{retained}) {
		t.Fatalf("at the volume's retainFor (2h, not the default 7 days): deleted %v, want %s", deletedDirs(res), retained)
	}
}
