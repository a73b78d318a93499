package policy

import (
	"fmt"
	"reflect"
	"testing"

	"k8s.io/utils/clock"

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
	a := NewArchivePolicies(r, ArchiveDeps{})
	get := a.For

	want := ArchivePolicy{Patterns: []string{"*.bin"}, FirstOnly: true, Compression: "zstd", CompressionLevel: 5,
		Sparse: SparseSkip}
	// The first answer recorded the live annotations in the store (a change: resolved once more, then cached).
	for range 2 {
		if got := get(ref.DirName()); !reflect.DeepEqual(got, want) {
			t.Fatalf("policy %+v, want %+v", got, want)
		}
	}
	// Cached (the archiver asks for every file it visits) until the store changes a record: the pod informer's
	// Observe records the new annotation, and the next question has the new answer, however soon.
	ann = map[string]string{api.AnnotationArchive: "false"}
	if got := get(ref.DirName()); got.Off {
		t.Fatal("the cached policy was not used while no record changed")
	}
	if err := r.Observe(ref, ann); err != nil {
		t.Fatal(err)
	}
	if got := get(ref.DirName()); !got.Off {
		t.Fatalf("policy %+v after the annotation was recorded: want archiving off from the new annotation", got)
	}
	// Any change of a record counts, whoever made it.
	ann = map[string]string{api.AnnotationArchive: "true"}
	if got := get(ref.DirName()); !got.Off {
		t.Fatal("the cached policy was not used while no record changed")
	}
	if err := st.SetPodAnnotations("v1:n:pvc-1", ref.DirName(), ann); err != nil {
		t.Fatal(err)
	}
	if got := get(ref.DirName()); !reflect.DeepEqual(got, want) {
		t.Fatalf("policy %+v after the record changed, want %+v", got, want)
	}
	// A directory no volume owns archives with the defaults.
	if got := get("ns_other_1123456789abcdef0123456789abcdef"); !reflect.DeepEqual(got, ArchivePolicy{}) {
		t.Fatalf("unowned directory: %+v, want the defaults", got)
	}
	// The cache stays bounded however many directories are asked about.
	for i := range archiveCacheMax + 10 {
		get(fmt.Sprintf("ns_other%d_1123456789abcdef0123456789abcdef", i))
	}
	if n := len(a.cache); n > archiveCacheMax {
		t.Fatalf("%d cached policies, want at most %d", n, archiveCacheMax)
	}
}
