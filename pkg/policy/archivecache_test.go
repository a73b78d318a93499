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
	if n := len(a.retained); n != retainedCacheMax { // no volume owns them: not published
		t.Fatalf("%d cached policies of directories no volume owns, want %d", n, retainedCacheMax)
	}
	if n := len(a.cache); n > archiveCacheMax {
		t.Fatalf("%d cached policies of published directories, want at most %d", n, archiveCacheMax)
	}
}

// TestRetainedRescanKeepsLivePoliciesCached: the archiver's hourly rescan of the retained (unpublished) pod
// directories, and a garbage collection pass, ask for each one's policy once. With 5,000 of them on the node the
// live pods' cached policies stay cached: after the rescan, asking for every live pod's policy again resolves
// nothing (no read of the store). Resolving is counted through the pod lookup the Resolver makes for every
// directory with a pod (returning "not known", so that nothing is written to the store and nothing goes stale).
func TestRetainedRescanKeepsLivePoliciesCached(t *testing.T) {
	const live, retained = 100, 5000
	st, err := store.Open(t.TempDir(), clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	const vol = "v1:n:pvc-1"
	if _, err := st.CreateVolume(&store.Volume{ID: vol, Kind: store.Persistent, Node: "n",
		Parameters: map[string]string{api.ParamArchivePatterns: "*.bin"}}); err != nil {
		t.Fatal(err)
	}
	claim := func(name string) string {
		t.Helper()
		ref := store.PodRef{Namespace: "ns", Name: name, UID: "0123456789abcdef0123456789abcdef"}
		if _, err := st.ClaimPodDir(vol, ref.DirName(), &ref); err != nil {
			t.Fatal(err)
		}
		return ref.DirName()
	}
	var liveDirs, retainedDirs []string
	for i := range live {
		d := claim(fmt.Sprintf("live-%d", i))
		if err := st.AddTarget(vol, store.Target{Path: "/target/" + d, PodDir: d}); err != nil {
			t.Fatal(err)
		}
		liveDirs = append(liveDirs, d)
	}
	for i := range retained {
		retainedDirs = append(retainedDirs, claim(fmt.Sprintf("gone-%d", i))) // claimed, never published (or unpublished)
	}
	resolves := 0
	r := NewResolver(st, func(store.PodRef) (map[string]string, bool) { resolves++; return nil, false }, Defaults{})
	a := NewArchivePolicies(r, ArchiveDeps{})
	want := ArchivePolicy{Patterns: []string{"*.bin"}}
	ask := func(dirs []string) int {
		t.Helper()
		resolves = 0
		for _, d := range dirs {
			if got := a.For(d); !reflect.DeepEqual(got, want) {
				t.Fatalf("policy of %s: %+v, want %+v", d, got, want)
			}
		}
		return resolves
	}
	if n := ask(liveDirs); n != live {
		t.Fatalf("the live pods' first lookups resolved %d times, want %d", n, live)
	}
	if n := ask(retainedDirs); n != retained {
		t.Fatalf("the rescan resolved %d times, want %d (each retained directory once)", n, retained)
	}
	if n := ask(liveDirs); n != 0 {
		t.Fatalf("after a rescan of %d retained directories the live pods' lookups read the store %d times, want 0",
			retained, n)
	}
	if len(a.retained) > retainedCacheMax || len(a.cache) != live {
		t.Fatalf("%d retained and %d live policies cached, want at most %d and %d", len(a.retained), len(a.cache),
			retainedCacheMax, live)
	}
	// A live pod's directory unpublished moves to the retained cache (the store's change makes its entry stale).
	if err := st.RemoveTarget(vol, "/target/"+liveDirs[0]); err != nil {
		t.Fatal(err)
	}
	a.For(liveDirs[0])
	if _, ok := a.cache[liveDirs[0]]; ok {
		t.Fatal("an unpublished directory's policy is still cached with the live ones")
	}
	if _, ok := a.retained[liveDirs[0]]; !ok {
		t.Fatal("an unpublished directory's policy is not in the retained cache")
	}
}
