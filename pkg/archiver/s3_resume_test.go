package archiver

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/minio/minio-go/v7"
)

// s3Child runs an archiver child process (see TestMain) against the S3 server.
func (e *s3Env) s3Child(rate int64, comp string) (start func() *exec.Cmd, log func() string) {
	dir := e.t.TempDir()
	tb, _ := json.Marshal(e.s3Target())
	spec := childSpec{Root: e.root, StateDir: e.state, S3TargetFile: filepath.Join(dir, "s3.json"), BytesPerSecond: rate, Compression: comp}
	sb, _ := json.Marshal(spec)
	specFile := filepath.Join(dir, "spec.json")
	if err := os.WriteFile(spec.S3TargetFile, tb, 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(specFile, sb, 0o600); err != nil {
		e.t.Fatal(err)
	}
	logFile := filepath.Join(dir, "child.log")
	start = func() *exec.Cmd {
		f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			e.t.Fatal(err)
		}
		defer f.Close()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+specFile)
		cmd.Stdout, cmd.Stderr = f, f
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			e.t.Fatal(err)
		}
		return cmd
	}
	return start, func() string {
		b, _ := os.ReadFile(logFile)
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		return string(b)
	}
}

// serverParts is the number of parts the server holds of the multipart upload in progress for key (0 when none).
func (e *s3Env) serverParts(key string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ups, err := e.s3.Uploads(ctx)
	if err != nil || len(ups[key]) == 0 {
		return 0
	}
	if len(ups[key]) > 1 {
		e.t.Errorf("%d multipart uploads in progress for %s: %v", len(ups[key]), key, ups[key])
	}
	res, err := minio.Core{Client: e.s3.Client()}.ListObjectParts(ctx, e.s3.Bucket, key, ups[key][0], 0, 1000)
	if err != nil {
		return 0
	}
	return len(partsByNumber(res.ObjectParts)) // SeaweedFS lists a part sent again once more
}

// journalParts is the number of parts the journal's one item records as acknowledged.
func (e *s3Env) journalParts() int {
	files, _ := filepath.Glob(filepath.Join(e.state, "items", "*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var it Item
		if json.Unmarshal(b, &it) != nil || it.Progress == nil {
			continue
		}
		var tok s3Token
		if json.Unmarshal([]byte(it.Progress.Token), &tok) == nil {
			return tok.Parts
		}
	}
	return 0
}

// SIGKILL the archiver 10 times during one multipart upload: one object with the manifest's digest (rclone's copy),
// no multipart upload left, every restart continues the journalled upload, and no more than one part per kill is
// sent again (the one in flight, or the one acknowledged just before the kill and not yet journalled).
func TestS3SIGKILLResumesTheMultipartUpload(t *testing.T) {
	const kills = 10
	size, rate := bigSize(), int64(128<<20)
	if testing.Short() {
		rate = 48 << 20
	}
	e := newS3Env(t)
	pod := e.pod("ns", "resume")
	sum := writeRandom(t, filepath.Join(e.root, pod, "app", "heap.hprof"), size, 11)
	key := e.key(pod, "app/heap.hprof")
	start, childLog := e.s3Child(rate, "")
	partTime := time.Duration(float64(8<<20) / float64(rate) * float64(time.Second))
	resent, j := 0, 0
	for i := range kills {
		cmd := start()
		// Kill at a random point of the part after one to two parts this run acknowledged (the journal, read while
		// the child writes it: its files are replaced atomically).
		at := j + 1 + rand.IntN(2)
		deadline := time.Now().Add(2 * time.Minute)
		for e.journalParts() < at {
			if _, done := e.object(key); done {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("the upload finished after %d of %d kills: make it slower", i, kills)
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("kill %d: the journal does not reach %d parts; child log:\n%s", i, at, childLog())
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(rand.N(partTime))
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		var s int
		s, j = e.serverParts(key), e.journalParts()
		resent += max(s-j, 1) // the next run sends parts j+1.. again; at least the one in flight was lost
		t.Logf("kill %d: the server holds %d parts, the journal %d", i, s, j)
	}
	cmd := start()
	waitFor(t, 5*time.Minute, "the object", func() bool { _, ok := e.object(key); return ok })
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()

	log := childLog()
	if n := strings.Count(log, "Resuming upload"); n < kills {
		t.Errorf("%d of %d restarts resumed the upload; child log:\n%s", n, kills, log)
	}
	if strings.Contains(log, "starting over") {
		t.Errorf("an upload started over; child log:\n%s", log)
	}
	m := e.rcloneManifest(key)
	got := e.rcloneSHA256(key)
	if m.SHA256 != sum || m.StoredSHA256 != sum || got != sum || m.Size != size {
		t.Fatalf("manifest %+v; rclone's copy sha256 %s; local %s", m, got, sum)
	}
	e.noUploads()
	if objs, err := e.s3.Objects(context.Background()); err != nil || len(objs) != 2 {
		t.Errorf("objects %v (%v), want the dump and its manifest", objs, err)
	}
	t.Logf("%d parts of %d MiB; %d parts sent again over %d kills", (size+8<<20-1)/(8<<20), 8, resent, kills)
	if resent > kills {
		t.Fatalf("%d parts sent again over %d kills: more than one per kill", resent, kills)
	}
}

// The server stopped for a minute in the middle of an upload: the archiver retries, resumes the multipart upload
// when the server is back, and the object is complete and right.
func TestS3ServerStoppedMidUpload(t *testing.T) {
	down := time.Minute
	if testing.Short() {
		down = 10 * time.Second
	}
	e := newS3Env(t)
	tg := e.s3Target()
	pod := e.pod("ns", "outage")
	sum := writeRandom(t, filepath.Join(e.root, pod, "app", "heap.hprof"), 96<<20, 12)
	key := e.key(pod, "app/heap.hprof")
	cfg := e.s3Config(tg)
	cfg.BytesPerSecond = 16 << 20
	r := e.start(cfg, Deps{Dialer: e.s3Dialer(tg)})
	waitFor(t, time.Minute, "two parts on the server", func() bool { return e.serverParts(key) >= 2 })
	e.s3.Stop()
	t.Logf("server stopped for %v", down)
	time.Sleep(down)
	e.s3.Start()
	waitFor(t, 3*time.Minute, "the object", func() bool { _, ok := e.object(key); return ok })
	if got := e.rcloneSHA256(key); got != sum {
		t.Fatalf("rclone's copy sha256 %s, local %s", got, sum)
	}
	e.noUploads()
	if n := r.rec.count(api.ReasonArchiveUploadRestarted); n != 0 {
		t.Errorf("the upload started over: %v", r.rec.all())
	}
	if n := r.rec.count(api.ReasonArchiveRetrying); n == 0 {
		t.Errorf("no ArchiveRetrying event while the server was down: %v", r.rec.all())
	}
}
