//go:build soak

package soak

import (
	"context"
	"io"
	"net/http"
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

	st := s3WaitError(t, e, pod, "wrong credentials: the server refused accessKeyID/secretAccessKey")
	t.Logf("wrong secretAccessKey: the status file says %q", st.Error)
	s3LogSays(t, e, "wrong credentials")
	s3NoSecrets(t, ctx, e, pod, s3.SecretKey, bad)
	if got := fileSHA256(t, local); got != sum {
		t.Errorf("the dump changed or went: %s, want %s", got, sum)
	}
	if objs := s3Objects(t, s3); len(objs) != 0 {
		t.Errorf("objects %v after a refused upload", objs)
	}

	missing := "keeplog-missing-" + s3.Bucket[len("keeplog-"):]
	pid := e.kl.Pid()
	writeS3Secret(t, e.secret, s3, map[string]string{"bucket": missing})
	st = s3WaitError(t, e, pod, "missing bucket: bucket "+missing+" does not exist")
	t.Logf("missing bucket: the status file says %q", st.Error)
	s3LogSays(t, e, "missing bucket: bucket "+missing)
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
			t.Fatalf("deleteAfterUpload: the dump is still there a minute after its upload; status %+v", s3FileStatus(t, e, pod, dumpName(0)))
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
	if st := s3FileStatus(t, e, pod, dumpName(0)); st.State != string(archiver.StateDone) || !st.Deleted || st.Error != "" {
		t.Errorf("status after the fix %+v, want done, deleted after upload, no error", st)
	}
	if k, n := s3InProgress(t, s3); k != "" {
		t.Errorf("a multipart upload of %s (%d parts) is left", k, n)
	}
	s3NoSecrets(t, ctx, e, pod, s3.SecretKey, bad)
}

// s3WaitError waits until the pod's status file gives the dump an error that contains want, and returns its line.
func s3WaitError(t *testing.T, e *archEnv, pod binary.Pod, want string) archiver.FileStatus {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := s3FileStatus(t, e, pod, dumpName(0))
		if strings.Contains(st.Error, want) && st.State != string(archiver.StateDone) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("the status file does not say %q after a minute: %+v; keeplog's log:\n%s", want, st, e.kl.LogTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// s3LogSays checks that keeplog logged the failed attempt with its cause.
func s3LogSays(t *testing.T, e *archEnv, cause string) {
	t.Helper()
	b, err := os.ReadFile(e.kl.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "Upload failed; will retry") && strings.Contains(l, cause) {
			return
		}
	}
	t.Errorf("keeplog logged no retry that says %q:\n%s", cause, e.kl.LogTail(20))
}

// s3NoSecrets checks that no secret appears in keeplog's log, the pod's status file, the journal or /metrics.
func s3NoSecrets(t *testing.T, ctx context.Context, e *archEnv, pod binary.Pod, secrets ...string) {
	t.Helper()
	texts := map[string]string{}
	for name, p := range map[string]string{"log": e.kl.LogPath, "status file": filepath.Join(e.kl.Root, pod.DirName(), api.ArchiveStatusPath)} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		texts[name] = string(b)
	}
	journal, _ := filepath.Glob(filepath.Join(e.kl.Root, ".keeplog", "archiver", "items", "*.json"))
	for _, p := range journal {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		texts["journal "+filepath.Base(p)] = string(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.kl.HTTPAddr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	texts["metrics"] = string(b)
	for name, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("keeplog's %s quotes a secretAccessKey", name)
			}
		}
	}
}
