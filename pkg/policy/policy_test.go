package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

func TestValidateParameters(t *testing.T) {
	for _, tc := range []struct {
		name    string
		params  map[string]string
		wantErr []string // substrings; none means valid
	}{
		{"empty", nil, nil},
		{"all valid", map[string]string{api.ParamArchive: "false", api.ParamArchivePatterns: "*.hprof, dumps/*.bin",
			api.ParamDeleteAfterUpload: "true", api.ParamFirstOnly: "1", api.ParamRetainFor: "72h", api.ParamLimitAction: "block"}, nil},
		{"CO parameters kept", map[string]string{"csi.storage.k8s.io/pvc/name": "x"}, nil},
		{"unknown", map[string]string{"retention": "1h"}, []string{`unknown StorageClass parameter "retention"`, "retainFor"}},
		{"bad bool", map[string]string{api.ParamFirstOnly: "yes please"}, []string{`firstOnly="yes please"`, "true or false"}},
		{"bad duration", map[string]string{api.ParamRetainFor: "7 days"}, []string{`retainFor="7 days"`, "duration"}},
		{"negative duration", map[string]string{api.ParamRetainFor: "-1h"}, []string{"positive"}},
		{"bad action", map[string]string{api.ParamLimitAction: "kill"}, []string{`limitAction="kill"`, `"warn" or "block"`}},
		{"absolute pattern", map[string]string{api.ParamArchivePatterns: "/etc/*"}, []string{`pattern "/etc/*"`}},
		{"dotdot pattern", map[string]string{api.ParamArchivePatterns: "../*.hprof"}, []string{`".."`}},
		{"malformed glob", map[string]string{api.ParamArchivePatterns: "[a"}, []string{`pattern "[a"`}},
		{"no pattern", map[string]string{api.ParamArchivePatterns: " , "}, []string{"no pattern"}},
		{"reset is not a parameter", map[string]string{"firstOnlyReset": "x"}, []string{"unknown"}},
		{"compression", map[string]string{api.ParamArchiveCompression: "zstd:19", api.ParamArchiveCompressionLevel: "3",
			api.ParamArchiveSparse: "skip"}, nil},
		{"no compression", map[string]string{api.ParamArchiveCompression: "none"}, nil},
		{"bad compression", map[string]string{api.ParamArchiveCompression: "gzip"}, []string{`archiveCompression="gzip"`, `"none" or "zstd"`}},
		{"bad level in compression", map[string]string{api.ParamArchiveCompression: "zstd:99"}, []string{`archiveCompression="zstd:99"`, `level "99"`, "1 to 22"}},
		{"none with a level", map[string]string{api.ParamArchiveCompression: "none:3"}, []string{`archiveCompression="none:3"`}},
		{"bad level", map[string]string{api.ParamArchiveCompressionLevel: "fast"}, []string{`archiveCompressionLevel="fast"`, "1 to 22"}},
		{"bad sparse", map[string]string{api.ParamArchiveSparse: "drop"}, []string{`archiveSparse="drop"`, `"compress", "skip" or "upload"`}},
		{"every problem at once", map[string]string{api.ParamFirstOnly: "x", api.ParamRetainFor: "y"}, []string{"firstOnly", "retainFor"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateParameters(tc.params)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one mentioning %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestResolveCompressionAndSparse(t *testing.T) {
	for _, tc := range []struct {
		name        string
		params, ann map[string]string
		algo        string
		level       int
		sparse      SparseAction
		warn        string
	}{
		{"default", nil, nil, "", 0, "", ""},
		{"parameter", map[string]string{api.ParamArchiveCompression: "zstd"}, nil, "zstd", 0, "", ""},
		{"parameter with level", map[string]string{api.ParamArchiveCompression: "zstd:7"}, nil, "zstd", 7, "", ""},
		{"level parameter wins over the inline level", map[string]string{api.ParamArchiveCompression: "zstd:7", api.ParamArchiveCompressionLevel: "2"}, nil, "zstd", 2, "", ""},
		{"annotation turns it on", nil, map[string]string{api.AnnotationArchiveCompression: "zstd:1"}, "zstd", 1, "", ""},
		{"annotation keeps the class's level", map[string]string{api.ParamArchiveCompression: "zstd:9"},
			map[string]string{api.AnnotationArchiveCompression: "zstd"}, "zstd", 9, "", ""},
		{"annotation turns it off", map[string]string{api.ParamArchiveCompression: "zstd:9"},
			map[string]string{api.AnnotationArchiveCompression: "none"}, "", 0, "", ""},
		{"annotation level", map[string]string{api.ParamArchiveCompression: "zstd"},
			map[string]string{api.AnnotationArchiveCompressionLevel: "12"}, "zstd", 12, "", ""},
		{"sparse", map[string]string{api.ParamArchiveSparse: "upload"}, map[string]string{api.AnnotationArchiveSparse: "skip"}, "", 0, SparseSkip, ""},
		{"bad annotation ignored", map[string]string{api.ParamArchiveCompression: "zstd:4"},
			map[string]string{api.AnnotationArchiveCompression: "lz4"}, "zstd", 4, "", `annotation keeplog.csi.io/archive-compression="lz4" ignored`},
		{"bad level annotation ignored", nil, map[string]string{api.AnnotationArchiveCompressionLevel: "0"}, "", 0, "",
			`annotation keeplog.csi.io/archive-compression-level="0" ignored: must be a zstd level from 1 to 22`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, warns := Resolve(tc.params, tc.ann, Defaults{})
			if p.ArchiveCompression != tc.algo || p.ArchiveCompressionLevel != tc.level || p.ArchiveSparse != tc.sparse {
				t.Fatalf("compression %q level %d sparse %q, want %q %d %q", p.ArchiveCompression, p.ArchiveCompressionLevel,
					p.ArchiveSparse, tc.algo, tc.level, tc.sparse)
			}
			switch {
			case tc.warn == "" && len(warns) > 0:
				t.Fatalf("warnings %v", warns)
			case tc.warn != "" && (len(warns) != 1 || !strings.Contains(warns[0].Error(), tc.warn)):
				t.Fatalf("warnings %v, want one saying %q", warns, tc.warn)
			}
		})
	}
}

func TestResolvePrecedenceAndWarnings(t *testing.T) {
	d := Defaults{RetainFor: 48 * time.Hour, MaxRetainFor: 100 * time.Hour}
	p, warns := Resolve(nil, nil, d)
	want := Policy{Archive: true, RetainFor: 48 * time.Hour, LimitAction: LimitWarn}
	if !reflect.DeepEqual(p, want) || len(warns) != 0 {
		t.Fatalf("defaults: %+v %v, want %+v", p, warns, want)
	}
	if p, _ := Resolve(nil, nil, Defaults{}); p.RetainFor != DefaultRetainFor {
		t.Fatalf("no default configured: retain %s, want %s", p.RetainFor, DefaultRetainFor)
	}

	params := map[string]string{api.ParamArchivePatterns: "*.hprof", api.ParamFirstOnly: "true", api.ParamDeleteAfterUpload: "true",
		api.ParamRetainFor: "24h", api.ParamLimitAction: "block"}
	ann := map[string]string{
		api.AnnotationArchivePatterns:           "*.bin,core",
		api.AnnotationFirstOnly:                 "false",
		api.AnnotationDeleteAfterUpload:         "maybe", // malformed: the StorageClass's true stays
		api.AnnotationFirstOnlyReset:            "2026-11-23",
		api.AnnotationRetainFor:                 "1000h", // over the cap
		api.AnnotationPrefix + "dump-requested": "x",     // read elsewhere: no warning
		api.AnnotationPrefix + "retian-for":     "1h",    // typo: warned
		"other.io/annotation":                   "ignored",
	}
	p, warns = Resolve(params, ann, d)
	want = Policy{Archive: true, ArchivePatterns: []string{"*.bin", "core"}, DeleteAfterUpload: true, FirstOnly: false,
		FirstOnlyReset: "2026-11-23", RetainFor: 100 * time.Hour, LimitAction: LimitBlock}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("resolved\n got %+v\nwant %+v", p, want)
	}
	msg := errors.Join(warns...).Error()
	for _, w := range []string{api.AnnotationDeleteAfterUpload + `="maybe" ignored`, "capped at the driver's maximum 100h0m0s",
		api.AnnotationPrefix + "retian-for is not one keeplog knows"} {
		if !strings.Contains(msg, w) {
			t.Errorf("warnings %q do not mention %q", msg, w)
		}
	}
	if len(warns) != 3 {
		t.Errorf("%d warnings, want 3: %v", len(warns), warns)
	}
	if p, _ := Resolve(map[string]string{api.ParamArchive: "false"}, nil, d); p.Archive {
		t.Error("archive=false from the StorageClass did not turn archiving off")
	}
	if p, _ := Resolve(map[string]string{api.ParamArchive: "false"}, map[string]string{api.AnnotationArchive: "true"}, d); !p.Archive {
		t.Error("the pod's archive=true annotation did not override the StorageClass")
	}
}

func TestKeeplogAnnotations(t *testing.T) {
	got := KeeplogAnnotations(map[string]string{api.AnnotationFirstOnly: "true", "a/b": "c", "keeplog.csi.io": "no slash"})
	if !reflect.DeepEqual(got, map[string]string{api.AnnotationFirstOnly: "true"}) {
		t.Fatalf("got %v", got)
	}
	if KeeplogAnnotations(map[string]string{"a/b": "c"}) != nil {
		t.Fatal("no keeplog annotations must give nil")
	}
}

func TestResolverRecordsAnnotationsAndOutlivesThePod(t *testing.T) {
	st, err := store.Open(t.TempDir(), clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateVolume(&store.Volume{ID: "v1:n:pvc-1", Kind: store.Persistent, Node: "n",
		Parameters: map[string]string{api.ParamFirstOnly: "true", api.ParamRetainFor: "10h"}}); err != nil {
		t.Fatal(err)
	}
	ref := store.PodRef{Namespace: "ns", Name: "app", UID: "0123456789abcdef0123456789abcdef"}
	if _, err := st.ClaimPodDir("v1:n:pvc-1", ref.DirName(), &ref); err != nil {
		t.Fatal(err)
	}
	live := map[string]string{api.AnnotationFirstOnly: "false", api.AnnotationFirstOnlyReset: "1", "app": "x"}
	alive := true
	r := NewResolver(st, func(got store.PodRef) (map[string]string, bool) {
		if got != ref || !alive {
			return nil, false
		}
		return live, true
	}, Defaults{})

	p, warns, err := r.For(ref.DirName())
	if err != nil || len(warns) != 0 || p.FirstOnly || p.FirstOnlyReset != "1" || p.RetainFor != 10*time.Hour {
		t.Fatalf("live pod: %+v %v %v; want the annotation over the StorageClass", p, warns, err)
	}
	// The re-arm annotation changes while the pod lives (the informer calls Observe), then the pod is deleted.
	live = map[string]string{api.AnnotationFirstOnly: "false", api.AnnotationFirstOnlyReset: "2"}
	if err := r.Observe(ref, live); err != nil {
		t.Fatal(err)
	}
	alive = false
	r2 := NewResolver(st, nil, Defaults{}) // and keeplog restarted without API access
	for _, res := range []*Resolver{r, r2} {
		p, _, err := res.For(ref.DirName())
		if err != nil || p.FirstOnly || p.FirstOnlyReset != "2" {
			t.Fatalf("deleted pod: %+v %v; want its last recorded annotations", p, err)
		}
	}
	_, pd, err := st.Owner(ref.DirName())
	if err != nil || !reflect.DeepEqual(pd.Annotations, map[string]string{api.AnnotationFirstOnly: "false", api.AnnotationFirstOnlyReset: "2"}) {
		t.Fatalf("recorded %v (%v): only keeplog annotations, the latest", pd.Annotations, err)
	}

	// A pod without a keeplog directory is ignored; a directory no volume owns gets the defaults and an error.
	other := store.PodRef{Namespace: "ns", Name: "other", UID: "1123456789abcdef0123456789abcdef"}
	if err := r.Observe(other, map[string]string{api.AnnotationFirstOnly: "true"}); err != nil {
		t.Fatalf("Observe of a pod without a directory: %v", err)
	}
	p, _, err = r.For(other.DirName())
	if !errors.Is(err, store.ErrNotFound) || p.RetainFor != DefaultRetainFor || !p.Archive {
		t.Fatalf("unowned directory: %+v %v; want defaults and ErrNotFound", p, err)
	}
	if _, _, err := r.For("../etc"); err == nil {
		t.Fatal("a path outside the root was resolved")
	}
}
