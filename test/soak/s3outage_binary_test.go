//go:build soak

package soak

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keeplog/keeplog/internal/s3test"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/archiver"
	"github.com/keeplog/keeplog/test/binary"
)

// TestBinaryS3ServerOutage is issue 15's "server stopped 60 s mid-upload → completes after" through the shipped
// binary: a 128 MiB dump archived at 16 MiB/s to a real SeaweedFS S3 server, the server process SIGKILLed by its
// PID in the middle of the third part and started again KEEPLOG_S3_OUTAGE (60s) later on the same ports and data.
// While it is down keeplog retries and says why (its log, the pod's status file) and keeps the dump; after it is
// back the upload continues (it does not start over), the bucket holds one object and its manifest, rclone's copy
// hashes to the manifest's digest, no multipart upload is left, and keeplog sent at most the part in flight twice
// (keeplog_archiver_uploaded_bytes_total counts every byte it sent, failed attempts included).
func TestBinaryS3ServerOutage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("must run as root (keeplog bind-mounts)")
	}
	down := time.Minute
	if v := os.Getenv("KEEPLOG_S3_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("KEEPLOG_S3_OUTAGE %q: %v", v, err)
		}
		down = d
	}
	const size = 128 << 20
	ctx := context.Background()
	s3 := s3test.Start(t)
	e := newS3ArchEnv(t, ctx, s3, nil, "--archive-quiet-period=2s", "--archive-bandwidth=16Mi", "--retain-for=1h")
	src := filepath.Join(t.TempDir(), "dump.hprof")
	sum := writeRandomFile(t, src, size)
	pod := e.podWithDumps(ctx, "s3-outage", nil, []string{src})

	deadline := time.Now().Add(2 * time.Minute)
	for s3JournalParts(t, e.kl.Root) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the journal does not reach 2 parts; keeplog's log:\n%s", e.kl.LogTail(30))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// SIGKILL in the middle of the next part (8 MiB take half a second at 16 MiB/s): the part in flight is cut.
	time.Sleep(rand.N(400*time.Millisecond) + 50*time.Millisecond)
	pid := s3.PID()
	s3.Kill()
	stoppedAt := s3JournalParts(t, e.kl.Root)
	t.Logf("SeaweedFS (pid %d) killed with %d of %d parts journalled; down for %v", pid, stoppedAt, size/chunkSize, down)
	time.Sleep(down)
	st := fileStatus(t, e, pod, dumpName(0))
	if st.State == string(archiver.StateDone) || st.Error == "" || st.Attempts == 0 {
		t.Errorf("after %v without a server the status file says %+v, want a retried upload with its error", down, st)
	}
	if log, _ := os.ReadFile(e.kl.LogPath); !strings.Contains(string(log), "Upload failed; will retry") {
		t.Errorf("keeplog did not log a retry while the server was down:\n%s", e.kl.LogTail(30))
	}
	if got := fileSHA256(t, filepath.Join(e.kl.Root, pod.DirName(), dumpName(0))); got != sum {
		t.Errorf("the local dump changed during the outage: %s, want %s", got, sum)
	}
	t.Logf("while down, the status file said: %s (attempt %d)", st.Error, st.Attempts)
	s3.Start()
	s3WaitArchived(t, e, s3, sum, size, 3*time.Minute)
	if k, n := s3InProgress(t, s3); k != "" {
		t.Errorf("a multipart upload of %s (%d parts) is left", k, n)
	}
	log, _ := os.ReadFile(e.kl.LogPath)
	if strings.Contains(string(log), "starting over") {
		t.Errorf("the upload started over after the outage:\n%s", e.kl.LogTail(40))
	}
	m, err := binary.Scrape(ctx, e.kl.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	sent, _ := m.Sum(api.MetricArchiverUploadedBytesTotal)
	resumes := m.Series(api.MetricArchiverUploadResumesTotal)
	uploads := m.Series(api.MetricArchiverUploadsTotal)
	t.Logf("keeplog sent %.0f bytes for a %d-byte dump (%.1f MiB again); resumes %v; uploads %v",
		sent, size, (sent-size)/(1<<20), resumes, uploads)
	if sent < size || sent > size+chunkSize {
		t.Errorf("keeplog sent %.0f bytes for %d: more than the one part in flight (%d bytes) again", sent, size, chunkSize)
	}
	if resumes[`{result="restarted"}`] != 0 || uploads[`{result="success"}`] != 1 || uploads[`{result="retry"}`] == 0 {
		t.Errorf("resumes %v, uploads %v: want no restart, one success after at least one retry", resumes, uploads)
	}
}

// s3WaitArchived waits until the bucket holds exactly one object and its manifest, and checks them with Debian's
// rclone (an independent client): the copy's sha256 is sum and the manifest's raw and stored digests, its size
// size. It returns the object's key.
func s3WaitArchived(t *testing.T, e *archEnv, s3 *s3test.Server, sum string, size int64, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(s3Objects(t, s3)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no object after %v; keeplog's log:\n%s", timeout, e.kl.LogTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	objs := s3Objects(t, s3)
	var key string
	for _, o := range objs {
		if !strings.HasSuffix(o, ".manifest.json") {
			key = o
		}
	}
	if len(objs) != 2 || key == "" {
		t.Fatalf("objects %v, want the dump and its manifest", objs)
	}
	var m archiver.Manifest
	mb, err := s3.Rclone(context.Background(), "cat", s3.Remote(key+".manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	got, err := s3.RcloneSHA256(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if got != sum || m.SHA256 != sum || m.StoredSHA256 != sum || m.Size != size {
		t.Fatalf("rclone's copy sha256 %s; manifest %+v; the dump's %s", got, m, sum)
	}
	return key
}
