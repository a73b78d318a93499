package policy

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

func TestArchivePolicyFromStorageClassAndAnnotations(t *testing.T) {
	st, err := store.Open(t.TempDir(), clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateVolume(&store.Volume{ID: "v1:n:pvc-1", Kind: store.Persistent, Node: "n",
		Parameters: map[string]string{api.ParamFirstOnly: "true", api.ParamArchivePatterns: "*.bin",
			api.ParamArchiveCompression: "zstd:5", api.ParamArchiveSparse: "skip"}}); err != nil {
		t.Fatal(err)
	}
	ref := store.PodRef{Namespace: "ns", Name: "app", UID: "0123456789abcdef0123456789abcdef"}
	if _, err := st.ClaimPodDir("v1:n:pvc-1", ref.DirName(), &ref); err != nil {
		t.Fatal(err)
	}
	ann := map[string]string{api.AnnotationArchive: "true"}
	r := NewResolver(st, func(store.PodRef) (map[string]string, bool) { return ann, true }, Defaults{})
	now := time.Unix(1000, 0)
	clk := clocktesting.NewFakePassiveClock(now)
	get := NewArchivePolicies(r, ArchiveDeps{Clock: clk}).For

	want := ArchivePolicy{Patterns: []string{"*.bin"}, FirstOnly: true, Compression: "zstd", CompressionLevel: 5,
		Sparse: SparseSkip}
	if got := get(ref.DirName()); !reflect.DeepEqual(got, want) {
		t.Fatalf("policy %+v, want %+v", got, want)
	}
	// Cached for a few seconds (the archiver asks for every file it visits), then read again.
	ann = map[string]string{api.AnnotationArchive: "false"}
	if got := get(ref.DirName()); got.Off {
		t.Fatal("the cached policy was not used within its TTL")
	}
	clk.SetTime(now.Add(archiveCacheTTL))
	if got := get(ref.DirName()); !got.Off {
		t.Fatalf("policy %+v after the TTL: want archiving off from the new annotation", got)
	}
	// A directory no volume owns archives with the defaults.
	if got := get("ns_other_1123456789abcdef0123456789abcdef"); !reflect.DeepEqual(got, ArchivePolicy{}) {
		t.Fatalf("unowned directory: %+v, want the defaults", got)
	}
}

// TestArchivePolicyCacheStaysBounded: the archiver's rescan asks for 10,000 retained directories within the TTL;
// the cache keeps at most archiveCacheMax of them (it kept all 10,000, and a map never shrinks), and still has the
// latest ones.
func TestArchivePolicyCacheStaysBounded(t *testing.T) {
	st, err := store.Open(t.TempDir(), clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	a := NewArchivePolicies(NewResolver(st, nil, Defaults{}), ArchiveDeps{Clock: clk})
	most := 0
	var last string
	for i := range 10000 {
		last = fmt.Sprintf("ns_pod-%d_%032x", i, i)
		a.For(last)
		most = max(most, len(a.cache))
		if i%100 == 0 {
			clk.SetTime(clk.Now().Add(time.Millisecond)) // within the TTL throughout
		}
	}
	if most > archiveCacheMax {
		t.Errorf("the cache held %d directories, want at most %d", most, archiveCacheMax)
	}
	if _, ok := a.cache[last]; !ok {
		t.Error("the directory asked for last is not cached")
	}
}
