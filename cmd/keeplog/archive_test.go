package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keeplog/keeplog/pkg/archiver"
)

// A Secret volume with type: s3 gives the S3 dialer, the prefix as the archiver's base, and a description without
// the credentials; a bad S3 Secret names the key.
func TestArchiveDialerChoosesS3FromTheSecret(t *testing.T) {
	dir := t.TempDir()
	for k, v := range map[string]string{"type": "s3", "endpoint": "https://s3.example.com", "bucket": "team-dumps",
		"prefix": "keeplog", "accessKeyID": "AKIAEXAMPLE", "secretAccessKey": "s3cr3t-value"} {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d, target, desc, _, err := archiveDialer(dir, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.(*archiver.S3Dialer); !ok || target.BaseDir != "/keeplog" {
		t.Fatalf("dialer %T, base %q: want the S3 dialer under /keeplog", d, target.BaseDir)
	}
	if !strings.Contains(desc, "team-dumps") || strings.Contains(desc, "s3cr3t-value") || strings.Contains(desc, "AKIAEXAMPLE") {
		t.Errorf("description %q: want the bucket, no credentials", desc)
	}
	if err := os.WriteFile(filepath.Join(dir, "bucket"), []byte("Bad_Bucket"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, err := archiveDialer(dir, "node-a"); err == nil || !strings.Contains(err.Error(), "bucket") || strings.Contains(err.Error(), "s3cr3t-value") {
		t.Errorf("bad bucket: %v", err)
	}
}
