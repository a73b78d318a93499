package archiver

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
)

func goodS3Target() S3Target {
	return S3Target{Type: "s3", Endpoint: "https://s3.example.com", Region: "eu-west-1", Bucket: "dumps", Prefix: "k/v",
		AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "very-secret-key"}
}

// Every bad key is named in the error, and no credential is quoted in it or in String/GoString.
func TestS3TargetValidateNamesTheBadKey(t *testing.T) {
	if err := goodS3Target().Validate(); err != nil {
		t.Fatalf("good target: %v", err)
	}
	cases := map[string]func(*S3Target){
		"type":            func(t *S3Target) { t.Type = "sftp" },
		"endpoint":        func(t *S3Target) { t.Endpoint = "ftp://x" },
		"region":          func(t *S3Target) { t.Region = "Eu West" },
		"bucket":          func(t *S3Target) { t.Bucket = "A_B" },
		"prefix":          func(t *S3Target) { t.Prefix = "/abs/" },
		"caBundle":        func(t *S3Target) { t.CABundle = "not pem" },
		"accessKeyID":     func(t *S3Target) { t.AccessKeyID = "" },
		"secretAccessKey": func(t *S3Target) { t.SecretAccessKey = "" },
	}
	for key, edit := range cases {
		tg := goodS3Target()
		edit(&tg)
		err := tg.Validate()
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: error %v does not name the key", key, err)
		}
		if err != nil && strings.Contains(err.Error(), "very-secret-key") {
			t.Errorf("%s: error quotes the secret", key)
		}
	}
	plain := goodS3Target()
	plain.Endpoint = "http://s3.example.com"
	if err := plain.Validate(); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("plain http to a remote host: %v", err)
	}
	plain.Endpoint = "http://127.0.0.1:8333"
	if err := plain.Validate(); err != nil {
		t.Errorf("plain http to loopback: %v", err)
	}
	tg := goodS3Target()
	for _, s := range []string{tg.String(), tg.GoString()} {
		if strings.Contains(s, tg.SecretAccessKey) || strings.Contains(s, tg.AccessKeyID) {
			t.Errorf("%q shows a credential", s)
		}
	}
}

// A Secret volume with type: s3 is an S3 target; without a type key it is SFTP.
func TestTargetTypeAndLoadS3TargetFromASecretVolume(t *testing.T) {
	dir := t.TempDir()
	for k, v := range map[string]string{"type": "s3\n", "endpoint": "https://s3.example.com", "bucket": "dumps",
		"prefix": "a/b", "pathStyle": "true", "accessKeyID": "AKIAEXAMPLE\n", "secretAccessKey": "very-secret-key\n"} {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if typ, err := TargetType(dir); err != nil || typ != "s3" {
		t.Fatalf("TargetType: %q %v", typ, err)
	}
	tg, err := LoadS3Target(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !tg.PathStyle || tg.SecretAccessKey != "very-secret-key" || tg.BaseDir() != "/a/b" || tg.region() != "us-east-1" {
		t.Fatalf("loaded %#v (pathStyle %v, baseDir %s)", tg, tg.PathStyle, tg.BaseDir())
	}
	if err := os.WriteFile(filepath.Join(dir, "pathStyle"), []byte("sometimes"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadS3Target(dir); err == nil || !strings.Contains(err.Error(), "pathStyle") {
		t.Fatalf("bad pathStyle: %v", err)
	}
	sftp := t.TempDir()
	if typ, err := TargetType(sftp); err != nil || typ != "sftp" {
		t.Fatalf("TargetType of a Secret without type: %q %v", typ, err)
	}
	if err := os.WriteFile(filepath.Join(sftp, "type"), []byte("gcs"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := TargetType(sftp); err == nil || !strings.Contains(err.Error(), "type") {
		t.Fatalf("type gcs: %v", err)
	}
}

// The temporary name maps back to the final key; other names do not.
func TestFinalOfTemp(t *testing.T) {
	final := "/p/ns/pod/uid/app/heap.hprof"
	got, ok := finalOfTemp(tempPath(final, "0123456789abcdef0123"))
	if !ok || got != final {
		t.Fatalf("finalOfTemp: %q %v", got, ok)
	}
	if _, ok := finalOfTemp(final); ok {
		t.Fatalf("a final name is not a temporary one")
	}
}

// Each S3 failure a user can act on is named; a missing object is fs.ErrNotExist.
func TestS3ErrorNamesTheCause(t *testing.T) {
	tg := goodS3Target()
	for _, c := range []struct {
		er   minio.ErrorResponse
		want string
	}{
		{minio.ErrorResponse{Code: "InvalidAccessKeyId", StatusCode: 403}, "wrong credentials"},
		{minio.ErrorResponse{Code: "SignatureDoesNotMatch", StatusCode: 403}, "wrong credentials"},
		{minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}, "access denied"},
		{minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: 404}, "missing bucket"},
		{minio.ErrorResponse{Code: "RequestTimeTooSkewed", StatusCode: 403}, "clock skew"},
		{minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}, "server error"},
		{minio.ErrorResponse{Code: "InternalError", StatusCode: 500, RequestID: "r1"}, "[request r1]"},
	} {
		err := s3Error(tg, "put", "k", c.er)
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %q does not say %q", c.er.Code, err, c.want)
		}
		if errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: is ErrNotExist", c.er.Code)
		}
	}
	if err := s3Error(tg, "stat", "k", minio.ErrorResponse{Code: "NoSuchKey", StatusCode: 404}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("NoSuchKey: %v is not ErrNotExist", err)
	}
}
