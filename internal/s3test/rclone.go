package s3test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/minio/minio-go/v7"
)

// RcloneEnv is an environment that configures rclone's remote "s3k" for the server, with no config file: Debian's
// rclone is the independent client tests read objects back with. This machine's AWS_* variables (AWS_CA_BUNDLE) are
// left out: rclone would use them.
func (s *Server) RcloneEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env, "RCLONE_CONFIG=/dev/null", "RCLONE_CONFIG_S3K_TYPE=s3", "RCLONE_CONFIG_S3K_PROVIDER=SeaweedFS",
		"RCLONE_CONFIG_S3K_ENDPOINT="+s.Endpoint, "RCLONE_CONFIG_S3K_ACCESS_KEY_ID="+s.AccessKey,
		"RCLONE_CONFIG_S3K_SECRET_ACCESS_KEY="+s.SecretKey, "RCLONE_CONFIG_S3K_REGION=us-east-1",
		"RCLONE_CONFIG_S3K_FORCE_PATH_STYLE=true")
}

// Remote is rclone's name for an object of the bucket: s3k:<bucket>/<key>.
func (s *Server) Remote(key string) string { return "s3k:" + s.Bucket + "/" + key }

// Rclone runs Debian's rclone with args and the remote "s3k" configured for the server (RcloneEnv), and returns
// what it wrote to its standard output; an error carries what it wrote to its standard error.
func (s *Server) Rclone(ctx context.Context, args ...string) ([]byte, error) {
	var out bytes.Buffer
	err := s.rclone(ctx, &out, args...)
	return out.Bytes(), err
}

// RcloneSHA256 downloads an object with `rclone cat` and returns the sha256 of what rclone read, in hex. rclone
// says nothing of an object that is not there (it reads a "directory" with no files), so the object is looked up
// first, and what rclone read must be its size.
func (s *Server) RcloneSHA256(ctx context.Context, key string) (string, error) {
	oi, err := s.Client().StatObject(ctx, s.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return "", fmt.Errorf("stat %s: %w", key, err)
	}
	h := &countingHash{Hash: sha256.New()}
	if err := s.rclone(ctx, h, "cat", s.Remote(key)); err != nil {
		return "", err
	}
	if h.n != oi.Size {
		return "", fmt.Errorf("rclone cat %s read %d bytes of %d", s.Remote(key), h.n, oi.Size)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type countingHash struct {
	hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.Hash.Write(p)
}

func (s *Server) rclone(ctx context.Context, stdout io.Writer, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "rclone", args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = s.RcloneEnv(), stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("rclone %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return nil
}
