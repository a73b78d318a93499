package archiver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/policy"
)

// An S3 upload through the archiver: the object's bytes, downloaded by rclone (an independent client), hash to the
// manifest's digest, the manifest is a sibling object, the metadata headers name the pod, nothing is left in
// progress, and deleteAfterUpload deletes the local file only after that.
func TestS3UploadVerifiedByAnIndependentClient(t *testing.T) {
	for _, comp := range []string{"", "zstd:3"} {
		t.Run("compression="+comp, func(t *testing.T) {
			e := newS3Env(t)
			tg := e.s3Target()
			pod := e.pod("ns", "s3pod")
			raw := writeRandom(t, filepath.Join(e.root, pod, "app", "heap.hprof"), 21<<20+12345, 7) // 3 parts
			if comp != "" {
				raw = writeCompressible(t, filepath.Join(e.root, pod, "app", "heap.hprof"), 40<<20, 7)
			}
			algo, level := describeCompression(comp)
			r := e.start(e.s3Config(tg), Deps{Dialer: e.s3Dialer(tg), Policy: func(string) policy.ArchivePolicy {
				p := policy.ArchivePolicy{DeleteAfterUpload: true}
				if comp != "" {
					p.Compression, p.CompressionLevel = algo, level
				}
				return p
			}})
			key := e.key(pod, "app/heap.hprof")
			if comp != "" {
				key += ".zst"
			}
			local := filepath.Join(e.root, pod, "app", "heap.hprof")
			waitFor(t, 2*time.Minute, "the local file deleted after upload", func() bool { return !exists(local) })
			m := e.rcloneManifest(key)
			if m.SHA256 != raw || m.Namespace != "ns" || m.Pod != "s3pod" || m.Node != "node-a" || m.Container != "app" {
				t.Fatalf("manifest %+v: want sha256 %s of ns/s3pod on node-a, container app", m, raw)
			}
			if got := e.rcloneSHA256(key); got != m.StoredSHA256 {
				t.Fatalf("rclone's copy of %s hashes to %s, the manifest says %s", key, got, m.StoredSHA256)
			}
			oi, ok := e.object(key)
			if !ok || oi.Size != m.StoredSize {
				t.Fatalf("object %s: %v, %d bytes; the manifest says %d", key, ok, oi.Size, m.StoredSize)
			}
			md := oi.UserMetadata
			if md["Namespace"] != "ns" || md["Pod"] != "s3pod" || md["Uid"] == "" || md["Node"] != "node-a" || md["Container"] != "app" {
				t.Errorf("object metadata %v: want namespace, pod, uid, node, container", md)
			}
			if comp == "" && (m.StoredSHA256 != raw || m.Compression != "none") {
				t.Errorf("uncompressed manifest %+v: stored digest should be the raw one", m)
			}
			if comp != "" && m.Compression != "zstd" {
				t.Errorf("manifest compression %q, want zstd", m.Compression)
			}
			e.noUploads()
			if n := r.rec.count(api.ReasonArchived); n != 1 {
				t.Errorf("%d Archived events, want 1: %v", n, r.rec.all())
			}
		})
	}
}

// Wrong credentials and a missing bucket: the Event names the cause, the secret is not in it, nothing is deleted.
func TestS3ActionableErrors(t *testing.T) {
	cases := []struct {
		name, want string
		edit       func(*S3Target)
	}{
		{"wrong credentials", "wrong credentials", func(t *S3Target) { t.SecretAccessKey = "not-" + t.SecretAccessKey }},
		{"unknown access key", "wrong credentials", func(t *S3Target) { t.AccessKeyID = "AKNOSUCHKEY" }},
		{"missing bucket", "missing bucket", func(t *S3Target) { t.Bucket = "no-such-bucket-here" }},
	}
	e := newS3Env(t)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.state = filepath.Join(e.root, ".keeplog", "archiver-"+string(rune('a'+i)))
			if err := os.MkdirAll(e.state, 0o755); err != nil {
				t.Fatal(err)
			}
			tg := e.s3Target()
			c.edit(&tg)
			pod := e.pod("ns", "bad"+string(rune('a'+i)))
			local := filepath.Join(e.root, pod, "app", "heap.hprof")
			sum := writeRandom(t, local, 1<<20, 9)
			r := e.start(e.s3Config(tg), Deps{Dialer: e.s3Dialer(tg), Policy: func(string) policy.ArchivePolicy { return policy.ArchivePolicy{DeleteAfterUpload: true} }})
			waitFor(t, time.Minute, "an ArchiveRetrying event", func() bool { return r.rec.count(api.ReasonArchiveRetrying) > 0 })
			r.stop()
			ev := eventsWith(r.rec.all(), api.ReasonArchiveRetrying)
			if !strings.Contains(ev, c.want) {
				t.Errorf("event %s does not say %q", ev, c.want)
			}
			if strings.Contains(ev, e.s3.SecretKey) || strings.Contains(ev, tg.SecretAccessKey) {
				t.Errorf("event %s quotes the secret key", ev)
			}
			if !exists(local) || fileSHA(t, local) != sum {
				t.Errorf("the local file %s was deleted or changed", local)
			}
			if _, ok := e.object(e.key(pod, "app/heap.hprof")); ok {
				t.Errorf("an object exists after a failed upload")
			}
		})
	}
}
