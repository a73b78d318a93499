package archiver

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/keeplog/keeplog/internal/s3test"
	"github.com/keeplog/keeplog/pkg/store"
)

// s3Env is one S3 test's world: a real SeaweedFS server, a root with pod directories, a state directory.
type s3Env struct {
	*env
	s3 *s3test.Server
}

func newS3Env(t testing.TB) *s3Env {
	t.Helper()
	e := &s3Env{env: &env{t: t}, s3: s3test.Start(t)}
	e.root = filepath.Join(t.TempDir(), "root")
	e.state = filepath.Join(e.root, ".keeplog", "archiver")
	if err := os.MkdirAll(e.state, 0o755); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *s3Env) s3Target() S3Target {
	return S3Target{Type: "s3", Endpoint: e.s3.Endpoint, Bucket: e.s3.Bucket, Prefix: "dumps/node-a", PathStyle: true,
		AccessKeyID: e.s3.AccessKey, SecretAccessKey: e.s3.SecretKey}
}

func (e *s3Env) s3Dialer(t S3Target) Dialer {
	d, err := NewS3Dialer(t, S3DialerOptions{NodeName: "node-a", Timeout: 10 * time.Second})
	if err != nil {
		e.t.Fatalf("NewS3Dialer: %v", err)
	}
	return d
}

// s3Config is quick: short quiet period and backoff.
func (e *s3Env) s3Config(t S3Target) Config {
	return Config{NodeName: "node-a", Target: Target{BaseDir: t.BaseDir()}, QuietPeriod: 300 * time.Millisecond,
		PollInterval: 100 * time.Millisecond, RescanInterval: 2 * time.Second, MinBackoff: 200 * time.Millisecond, MaxBackoff: 2 * time.Second}
}

// key is the object key of a pod's file (first generation).
func (e *s3Env) key(pod, rel string) string {
	ref, err := store.ParsePodDirName(pod)
	if err != nil {
		e.t.Fatal(err)
	}
	rp, err := RemotePath(e.s3Target().BaseDir(), ref, rel)
	if err != nil {
		e.t.Fatal(err)
	}
	return s3Key(rp)
}

// object returns an object's info, or false when there is none.
func (e *s3Env) object(key string) (minio.ObjectInfo, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	oi, err := e.s3.Client().StatObject(ctx, e.s3.Bucket, key, minio.StatObjectOptions{})
	return oi, err == nil
}

// rcloneSHA256 downloads an object with Debian's rclone (an independent S3 client) and returns its sha256.
func (e *s3Env) rcloneSHA256(key string) string {
	e.t.Helper()
	sum, err := e.s3.RcloneSHA256(context.Background(), key)
	if err != nil {
		e.t.Fatal(err)
	}
	return sum
}

// rcloneManifest reads an object's manifest through rclone.
func (e *s3Env) rcloneManifest(key string) Manifest {
	e.t.Helper()
	b, err := e.s3.Rclone(context.Background(), "cat", e.s3.Remote(key+manifestSuffix))
	if err != nil {
		e.t.Fatal(err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		e.t.Fatalf("manifest of %s: %v\n%s", key, err, b)
	}
	return m
}

// noUploads fails when a multipart upload is left in the bucket.
func (e *s3Env) noUploads() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ups, err := e.s3.Uploads(ctx)
	if err != nil {
		e.t.Fatalf("ListMultipartUploads: %v", err)
	}
	if len(ups) > 0 {
		e.t.Errorf("multipart uploads left in the bucket: %v", ups)
	}
}

func eventsWith(evs []string, s string) string {
	var out []string
	for _, ev := range evs {
		if strings.Contains(ev, s) {
			out = append(out, ev)
		}
	}
	return fmt.Sprint(out)
}
