package s3test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	cmd := exec.CommandContext(ctx, "rclone", args...)
	cmd.Env = s.RcloneEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("rclone %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}

// RcloneSHA256 downloads an object with `rclone copyto` (into the server's directory, removed after) and returns
// the copy's sha256 in hex.
func (s *Server) RcloneSHA256(ctx context.Context, key string) (string, error) {
	dir, err := os.MkdirTemp(s.Dir, "rclone-copy-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	copied := filepath.Join(dir, "object")
	if _, err := s.Rclone(ctx, "copyto", "--s3-no-check-bucket", s.Remote(key), copied); err != nil {
		return "", err
	}
	f, err := os.Open(copied)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
