package s3test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"testing"

	"github.com/minio/minio-go/v7"
)

// TestReadBack: what is put in the bucket is listed by Objects (sorted) and read back by rclone with its bytes'
// sha256; an object that is not there is an error, not the sha256 of nothing (rclone itself says nothing of it).
func TestReadBack(t *testing.T) {
	ctx := context.Background()
	s := Start(t)
	body := bytes.Repeat([]byte("keeplog "), 1<<17) // 1 MiB
	for _, key := range []string{"b/obj.bin", "a/obj.bin"} {
		if _, err := s.Client().PutObject(ctx, s.Bucket, key, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if objs, err := s.Objects(ctx); err != nil || !slices.Equal(objs, []string{"a/obj.bin", "b/obj.bin"}) {
		t.Fatalf("Objects: %v (%v)", objs, err)
	}
	want := sha256.Sum256(body)
	if got, err := s.RcloneSHA256(ctx, "a/obj.bin"); err != nil || got != hex.EncodeToString(want[:]) {
		t.Fatalf("RcloneSHA256: %s (%v), want %x", got, err, want)
	}
	if got, err := s.RcloneSHA256(ctx, "a/missing.bin"); err == nil {
		t.Fatalf("RcloneSHA256 of a missing object: %s, no error", got)
	}
	if out, err := s.Rclone(ctx, "cat", s.Remote("b/obj.bin")); err != nil || !bytes.Equal(out, body) {
		t.Fatalf("Rclone cat: %d bytes (%v)", len(out), err)
	}
	if _, err := s.Rclone(ctx, "no-such-command"); err == nil {
		t.Fatal("rclone no-such-command: no error")
	}
}
