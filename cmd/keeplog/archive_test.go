package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keeplog/keeplog/pkg/archiver"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
)

func TestArchivePolicyFromStorageClassAndAnnotations(t *testing.T) {
	st, err := store.Open(t.TempDir(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateVolume(&store.Volume{ID: "v1:n:pvc-1", Kind: store.Persistent, Node: "n",
		Parameters: map[string]string{policy.ParamFirstOnly: "true", policy.ParamArchivePatterns: "*.bin",
			policy.ParamArchiveCompression: "zstd:5", policy.ParamArchiveSparse: "skip"}}); err != nil {
		t.Fatal(err)
	}
	ref := store.PodRef{Namespace: "ns", Name: "app", UID: "0123456789abcdef0123456789abcdef"}
	if _, err := st.ClaimPodDir("v1:n:pvc-1", ref.DirName(), &ref); err != nil {
		t.Fatal(err)
	}
	ann := map[string]string{policy.AnnotationArchive: "true"}
	r := policy.NewResolver(st, func(store.PodRef) (map[string]string, bool) { return ann, true }, policy.Defaults{})
	now := time.Unix(1000, 0)
	get := archivePolicy(r, nil, func() time.Time { return now })

	want := archiver.Policy{Patterns: []string{"*.bin"}, FirstOnly: true, Compression: "zstd", CompressionLevel: 5,
		Sparse: archiver.SparseSkip}
	if got := get(ref.DirName()); !reflect.DeepEqual(got, want) {
		t.Fatalf("policy %+v, want %+v", got, want)
	}
	// Cached for a few seconds (the archiver asks for every file it visits), then read again.
	ann = map[string]string{policy.AnnotationArchive: "false"}
	if got := get(ref.DirName()); got.Off {
		t.Fatal("the cached policy was not used within its TTL")
	}
	now = now.Add(policyCacheTTL)
	if got := get(ref.DirName()); !got.Off {
		t.Fatalf("policy %+v after the TTL: want archiving off from the new annotation", got)
	}
	// A directory no volume owns archives with the defaults.
	if got := get("ns_other_1123456789abcdef0123456789abcdef"); !reflect.DeepEqual(got, archiver.Policy{}) {
		t.Fatalf("unowned directory: %+v, want the defaults", got)
	}
}

// A Secret volume with type: s3 gives the S3 dialer, the prefix as the archiver's base, and a description without
// the credentials; a bad S3 Secret names the key.
func TestArchiveDialerChoosesS3FromTheSecret(t *testing.T) {
	dir := t.TempDir()
	for k, v := range map[string]string{"type": "s3", "endpoint": "https://s3.example.com", "bucket": "team-dumps",
		"prefix": "keeplog", "accessKeyID": "AKIAEXAMPLE", "secretAccessKey": "s3cr3t-value"} {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d, target, desc, err := archiveDialer(dir, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.(*archiver.S3Dialer); !ok || target.BaseDir != "/keeplog" {
		t.Fatalf("dialer %T, base %q: want the S3 dialer under /keeplog", d, target.BaseDir)
	}
	if !strings.Contains(desc, "team-dumps") || strings.Contains(desc, "s3cr3t-value") || strings.Contains(desc, "AKIAEXAMPLE") {
		t.Errorf("description %q: want the bucket, no credentials", desc)
	}
	if err := os.WriteFile(filepath.Join(dir, "bucket"), []byte("Bad_Bucket"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := archiveDialer(dir, "node-a"); err == nil || !strings.Contains(err.Error(), "bucket") || strings.Contains(err.Error(), "s3cr3t-value") {
		t.Errorf("bad bucket: %v", err)
	}
}
