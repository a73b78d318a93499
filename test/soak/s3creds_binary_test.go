//go:build soak

package soak

import (
	"context"
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

// TestBinaryS3WrongCredentials is issue 15's "wrong credentials → clear error, nothing deleted locally" through the
// shipped binary, with deleteAfterUpload on. keeplog starts with a wrong secretAccessKey: its log line and the pod's
// status file name the cause ("wrong credentials") and neither they, the journal nor /metrics quote either secret;
// the dump stays and the bucket stays empty. The Secret is then rewritten, keeplog still running (it reads the Secret
// again before each connection, as docs/archiving-s3.md says), with the right key but a bucket that does not exist:
// the error names the missing bucket. Rewritten right, keeplog uploads the dump once without a restart (one object
// and its manifest, rclone's copy hashes to the manifest's digest, one successful upload) and only then deletes it.
func TestBinaryS3WrongCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("must run as root (keeplog bind-mounts)")
	}
	const size = 6 << 20
	ctx := context.Background()
	s3 := s3test.Start(t)
	bad := "wrong" + s3.SecretKey[5:]
	e := newS3ArchEnv(t, ctx, s3, map[string]string{"secretAccessKey": bad}, "--archive-quiet-period=2s", "--retain-for=1h")
	src := filepath.Join(t.TempDir(), "dump.hprof")
	sum := writeRandomFile(t, src, size)
	pod := e.podWithDumps(ctx, "s3-creds", map[string]string{api.ParamDeleteAfterUpload: "true"}, []string{src})
	local := filepath.Join(e.kl.Root, pod.DirName(), dumpName(0))

	st := waitStatusError(t, e, pod, "wrong credentials: the server refused accessKeyID/secretAccessKey")
	t.Logf("wrong secretAccessKey: the status file says %q", st.Error)
	logSaysRetry(t, e, "wrong credentials")
	noSecrets(t, ctx, e, pod, s3.SecretKey, bad)
	if got := fileSHA256(t, local); got != sum {
		t.Errorf("the dump changed or went: %s, want %s", got, sum)
	}
	if objs := s3Objects(t, s3); len(objs) != 0 {
		t.Errorf("objects %v after a refused upload", objs)
	}

	missing := "keeplog-missing-" + s3.Bucket[len("keeplog-"):]
	pid := e.kl.Pid()
	writeS3Secret(t, e.secret, s3, map[string]string{"bucket": missing})
	st = waitStatusError(t, e, pod, "missing bucket: bucket "+missing+" does not exist")
	t.Logf("missing bucket: the status file says %q", st.Error)
	logSaysRetry(t, e, "missing bucket: bucket "+missing)
	if _, err := os.Stat(local); err != nil {
		t.Errorf("the dump went while its bucket is missing: %v", err)
	}

	writeS3Secret(t, e.secret, s3, nil)
	s3WaitArchived(t, e, s3, sum, size, 2*time.Minute)
	if e.kl.Pid() != pid {
		t.Errorf("keeplog restarted (PID %d, then %d): the rewritten Secret must apply without one", pid, e.kl.Pid())
	}
	if b, err := os.ReadFile(e.kl.LogPath); err != nil || !strings.Contains(string(b), "The archive target Secret changed; the next connection uses it") {
		t.Errorf("keeplog did not log that it took the rewritten Secret (%v):\n%s", err, e.kl.LogTail(20))
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(local); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deleteAfterUpload: the dump is still there a minute after its upload; status %+v", fileStatus(t, e, pod, dumpName(0)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	m, err := binary.Scrape(ctx, e.kl.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	if up := m.Series(api.MetricArchiverUploadsTotal); up[`{result="success"}`] != 1 {
		t.Errorf("uploads after the fix %v, want one success", up)
	}
	waitStatus(t, e, pod, "done, deleted after upload, no error", func(st archiver.FileStatus) bool {
		return st.State == string(archiver.StateDone) && st.Deleted && st.Error == ""
	})
	if k, n := s3InProgress(t, s3); k != "" {
		t.Errorf("a multipart upload of %s (%d parts) is left", k, n)
	}
	noSecrets(t, ctx, e, pod, s3.SecretKey, bad)
}
