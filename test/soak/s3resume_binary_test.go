//go:build soak

package soak

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/keeplog/keeplog/internal/s3test"
	"github.com/keeplog/keeplog/pkg/archiver"
	"github.com/keeplog/keeplog/test/binary"
)

// TestBinaryS3Resume is issue 15's resume test through the shipped binary: a KEEPLOG_RESUME_SIZE (1Gi) dump archived
// to a real SeaweedFS S3 server, bin/keeplog SIGKILLed KEEPLOG_RESUME_KILLS (10) times one to two parts into each
// run and started again. The bucket ends with one object and its manifest, rclone's copy of the object hashes to the
// manifest's digest and the dump's, no multipart upload is left (ListMultipartUploads), every restart resumed, and
// at most one part per kill was sent again.
func TestBinaryS3Resume(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("must run as root (keeplog bind-mounts)")
	}
	p := resumePlanFromEnv(t)
	ctx := context.Background()
	s3 := s3test.Start(t)
	e := newS3ArchEnv(t, ctx, s3, nil, "--archive-quiet-period=2s", "--archive-bandwidth="+p.bandwidth, "--retain-for=1h")
	src := filepath.Join(t.TempDir(), "dump.hprof")
	sum := writeRandomFile(t, src, p.size)
	e.podWithDumps(ctx, "s3-resume", nil, []string{src})

	bw, err := resource.ParseQuantity(p.bandwidth)
	if err != nil {
		t.Fatalf("bandwidth %q: %v", p.bandwidth, err)
	}
	partTime := time.Duration(float64(chunkSize) / float64(bw.Value()) * float64(time.Second))
	resent, j := 0, 0
	for i := range p.kills {
		// Kill at a random point of the part after one to two parts this run acknowledged (the journal, read while
		// keeplog writes it: its files are replaced atomically).
		at := j + 1 + rand.IntN(2)
		deadline := time.Now().Add(5 * time.Minute)
		for s3JournalParts(t, e.kl.Root) < at {
			if key, _ := s3InProgress(t, s3); key == "" && len(s3Objects(t, s3)) > 0 {
				t.Fatalf("the upload finished after %d kills: make it slower (KEEPLOG_RESUME_BANDWIDTH)", i)
			}
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: the journal does not reach %d parts; keeplog's log:\n%s", i, at, e.kl.LogTail(30))
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(rand.N(partTime))
		if err := e.kl.Kill(); err != nil {
			t.Fatal(err)
		}
		_, s := s3InProgress(t, s3)
		j = s3JournalParts(t, e.kl.Root) // keeplog is dead: its journal is at rest
		resent += max(s-j, 1)            // the next run sends parts j+1.. again; at least the one in flight was lost
		t.Logf("kill %d: the server holds %d parts, the journal %d", i, s, j)
		if err := e.kl.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s3WaitArchived(t, e, s3, sum, p.size, 10*time.Minute)
	if k, n := s3InProgress(t, s3); k != "" {
		t.Errorf("a multipart upload of %s (%d parts) is left", k, n)
	}
	log, _ := os.ReadFile(e.kl.LogPath)
	if n := strings.Count(string(log), "Resuming upload"); n < p.kills {
		t.Errorf("%d of %d restarts resumed the upload", n, p.kills)
	}
	if strings.Contains(string(log), "starting over") {
		t.Errorf("an upload started over:\n%s", e.kl.LogTail(40))
	}
	t.Logf("%d kills; %d bytes in %d MiB parts; %d parts sent again (limit %d)", p.kills, p.size, chunkSize>>20, resent, p.kills)
	if resent > p.kills {
		t.Errorf("%d parts sent again over %d kills: more than one per kill", resent, p.kills)
	}
}

// newS3ArchEnv starts keeplog archiving to s3 (a Secret volume directory with type: s3); over replaces keys of the
// Secret (a wrong credential, another bucket). The directory is e.secret, for writeS3Secret.
func newS3ArchEnv(t *testing.T, ctx context.Context, s3 *s3test.Server, over map[string]string, args ...string) *archEnv {
	e := &archEnv{t: t, work: t.TempDir()}
	e.secret = filepath.Join(e.work, "secret")
	if err := os.MkdirAll(e.secret, 0o700); err != nil {
		t.Fatal(err)
	}
	writeS3Secret(t, e.secret, s3, over)
	e.start(ctx, e.secret, args)
	return e
}

// writeS3Secret (re)writes the Secret directory dir for s3 with over's keys replaced, each file replaced atomically
// (kubelet swaps a Secret volume's files as a whole too).
func writeS3Secret(t *testing.T, dir string, s3 *s3test.Server, over map[string]string) {
	t.Helper()
	kv := map[string]string{"type": "s3", "endpoint": s3.Endpoint, "bucket": s3.Bucket, "prefix": "soak",
		"pathStyle": "true", "accessKeyID": s3.AccessKey, "secretAccessKey": s3.SecretKey}
	for k, v := range over {
		kv[k] = v
	}
	for k, v := range kv {
		tmp := filepath.Join(dir, "."+k+".tmp")
		if err := os.WriteFile(tmp, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
}

// s3InProgress is the key of the one multipart upload in progress and the parts the server holds of it.
func s3InProgress(t *testing.T, s3 *s3test.Server) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ups, err := s3.Uploads(ctx)
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	for key, ids := range ups {
		if len(ups) > 1 || len(ids) > 1 {
			t.Errorf("multipart uploads in progress: %v, want at most one", ups)
		}
		res, err := minio.Core{Client: s3.Client()}.ListObjectParts(ctx, s3.Bucket, key, ids[0], 0, 1000)
		if err != nil {
			return key, 0
		}
		nums := map[int]bool{} // SeaweedFS lists a part sent again once more
		for _, p := range res.ObjectParts {
			nums[p.PartNumber] = true
		}
		return key, len(nums)
	}
	return "", 0
}

// s3Objects lists the bucket (s3test's Objects), failing the test when it cannot.
func s3Objects(t *testing.T, s3 *s3test.Server) []string {
	t.Helper()
	objs, err := s3.Objects(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// s3JournalParts is the number of parts keeplog's journal records for its upload under way (its item files, each
// replaced atomically, so that they can be read while keeplog runs).
func s3JournalParts(t *testing.T, root string) int {
	files, _ := filepath.Glob(filepath.Join(root, ".keeplog", "archiver", "items", "*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var it archiver.Item
		var tok struct {
			Parts int `json:"parts"`
		}
		if json.Unmarshal(b, &it) == nil && it.Progress != nil && json.Unmarshal([]byte(it.Progress.Token), &tok) == nil {
			return tok.Parts
		}
	}
	return 0
}

// writeRandomFile writes size pseudo-random bytes and returns their sha256.
func writeRandomFile(t *testing.T, p string, size int64) string {
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rand.NewChaCha8([32]byte{15}), size)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func fileSHA256(t *testing.T, p string) string {
	s, err := binary.FileSHA256(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
