package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Version is the SeaweedFS module version hack/build-seaweedfs.sh builds (keep the two equal).
const Version = "v0.0.0-20261109003541-7506e5f91cd6"

// TB is what the server needs of its caller (testing.TB has it).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
}

// Server is one SeaweedFS server with an S3 gateway.
type Server struct {
	t TB
	// Endpoint is http://127.0.0.1:<port>.
	Endpoint string
	// Port is the S3 gateway's port (stable across Stop/Start).
	Port int
	// AccessKey and SecretKey are the one identity's credentials (all actions).
	AccessKey, SecretKey string
	// Bucket exists after Start.
	Bucket string
	// Dir is the server's data directory; LogFile its output.
	Dir, LogFile string

	bin   string
	ports [7]int
	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
}

// Binary returns the cached weed binary's path, or an error saying how to build it.
func Binary() (string, error) {
	cache := os.Getenv("KEEPLOG_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache", "keeplog")
	}
	p := filepath.Join(cache, "bin", "weed-"+Version, "weed")
	if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("SeaweedFS %s is not built at %s: run `make seaweedfs` (hack/build-seaweedfs.sh)", Version, p)
	}
	return p, nil
}

// Start starts a server with a new bucket and stops it in t.Cleanup.
func Start(t TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	s := &Server{t: t, bin: bin, Dir: t.TempDir(), AccessKey: "AK" + randHex(9), SecretKey: randHex(20), Bucket: "keeplog-" + randHex(4)}
	s.LogFile = filepath.Join(s.Dir, "weed.log")
	for i := range s.ports {
		if s.ports[i], err = freePort(); err != nil {
			t.Fatalf("s3test: %v", err)
		}
	}
	s.Port = s.ports[0]
	s.Endpoint = "http://127.0.0.1:" + strconv.Itoa(s.Port)
	cfg, _ := json.Marshal(map[string]any{"identities": []any{map[string]any{
		"name": "keeplog", "credentials": []any{map[string]string{"accessKey": s.AccessKey, "secretKey": s.SecretKey}},
		"actions": []string{"Admin", "Read", "List", "Tagging", "Write"}}}})
	if err := os.WriteFile(filepath.Join(s.Dir, "s3.json"), cfg, 0o600); err != nil {
		t.Fatalf("s3test: %v", err)
	}
	t.Cleanup(s.Stop)
	t.Cleanup(s.logTailIfFailed) // runs before Stop's: the server's side of a failure is printed
	s.Start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := s.Client()
	for {
		err = c.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{})
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("s3test: create bucket %s: %v (log %s)", s.Bucket, err, s.LogFile)
	}
	return s
}

// Client is a minio-go client with the server's credentials (for checks beside the code under test).
func (s *Server) Client() *minio.Client {
	c, err := minio.New("127.0.0.1:"+strconv.Itoa(s.Port), &minio.Options{
		Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		s.t.Fatalf("s3test: client: %v", err)
	}
	return c
}

// Start (re)starts the process on the same ports and data and waits until the S3 port answers.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	p := s.ports
	log, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatalf("s3test: %v", err)
	}
	defer log.Close()
	args := []string{"server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-dir=" + filepath.Join(s.Dir, "data"),
		"-master.port=" + strconv.Itoa(p[1]), "-master.port.grpc=" + strconv.Itoa(p[2]), "-master.telemetry=false",
		"-volume.port=" + strconv.Itoa(p[3]), "-volume.port.grpc=" + strconv.Itoa(p[4]),
		// A fixed number of small volumes: -volume.max=0 sizes the server by the disk's free space / 30 GiB, which
		// on a machine with under 30 GiB free (or 60 with two servers) is no volume at all, and then every part
		// upload answers 500 — a TestChartS3 failed so once while other work filled the disk.
		"-volume.max=64", "-master.volumeSizeLimitMB=256",
		"-filer", "-filer.port=" + strconv.Itoa(p[5]), "-filer.port.grpc=" + strconv.Itoa(p[6]),
		"-filer.localSocket=" + filepath.Join(s.Dir, "filer.sock"),
		"-s3", "-s3.port=" + strconv.Itoa(s.Port), "-s3.port.iceberg=0", "-s3.port.lance=0",
		"-s3.localSocket=" + filepath.Join(s.Dir, "s3.sock"),
		"-s3.config=" + filepath.Join(s.Dir, "s3.json"), "-s3.autoCreateBucket=false"}
	if err := os.MkdirAll(filepath.Join(s.Dir, "data"), 0o700); err != nil {
		s.t.Fatalf("s3test: %v", err)
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("s3test: start %s: %v", s.bin, err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(s.done)
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.Port), time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		select {
		case <-s.done:
			s.cmd = nil
			s.t.Fatalf("s3test: weed exited at start (log %s)", s.LogFile)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("s3test: S3 port %d does not answer after a minute (log %s)", s.Port, s.LogFile)
		}
	}
}

// Stop stops the process by its PID (SIGTERM, SIGKILL after 10s) and waits for it.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Kill stops the process by its PID with SIGKILL, as a crash or a pulled cable would (the requests in flight are
// cut, nothing is finished), and waits for it. Start brings it back.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// PID is the running process's PID (0 when stopped).
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Objects lists the bucket's keys (sorted, as S3 lists them).
func (s *Server) Objects(ctx context.Context) ([]string, error) {
	var out []string
	for o := range s.Client().ListObjects(ctx, s.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("ListObjects: %w", o.Err)
		}
		out = append(out, o.Key)
	}
	return out, nil
}

// Uploads lists the multipart uploads in progress in the bucket (key -> upload IDs).
func (s *Server) Uploads(ctx context.Context) (map[string][]string, error) {
	core := minio.Core{Client: s.Client()}
	out := map[string][]string{}
	km, im := "", ""
	for {
		res, err := core.ListMultipartUploads(ctx, s.Bucket, "", km, im, "", 1000)
		if err != nil {
			return nil, err
		}
		for _, u := range res.Uploads {
			out[u.Key] = append(out[u.Key], u.UploadID)
		}
		if !res.IsTruncated {
			return out, nil
		}
		if res.NextKeyMarker == km && res.NextUploadIDMarker == im {
			return nil, errors.New("ListMultipartUploads does not advance")
		}
		km, im = res.NextKeyMarker, res.NextUploadIDMarker
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// logTailIfFailed prints the end of the server's log when the test failed (the temporary directory goes with it).
func (s *Server) logTailIfFailed() {
	if !s.t.Failed() {
		return
	}
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		s.t.Logf("s3test: %v", err)
		return
	}
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	s.t.Logf("s3test: the end of weed's log (%s):\n%s", s.LogFile, b)
}
