package policy

import (
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
