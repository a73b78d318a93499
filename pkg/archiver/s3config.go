package archiver

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// S3Target is an S3-compatible object store to archive to (`type: s3` in the archive target Secret). Like Target it
// comes from a Secret volume (one file per key) or one JSON file; String and GoString never show the credentials.
type S3Target struct {
	Type string `json:"type"`
	// Endpoint is the server's URL: https://host[:port] (http:// only for a loopback test server).
	Endpoint string `json:"endpoint"`
	// Region of the bucket; "us-east-1" when empty (what most S3-compatible servers accept).
	Region string `json:"region,omitempty"`
	// Bucket must exist: keeplog does not create it.
	Bucket string `json:"bucket"`
	// Prefix is the key prefix archives go under ("" for the bucket's root); no leading or trailing "/".
	Prefix string `json:"prefix,omitempty"`
	// PathStyle addresses the bucket as https://endpoint/bucket/key instead of https://bucket.endpoint/key.
	PathStyle bool `json:"pathStyle,omitempty"`
	// CABundle is PEM certificates to trust for Endpoint instead of the system's.
	CABundle string `json:"caBundle,omitempty"`
	// AccessKeyID, SecretAccessKey and SessionToken (optional) sign every request.
	AccessKeyID     string `json:"accessKeyID"`
	SecretAccessKey string `json:"secretAccessKey"`
	SessionToken    string `json:"sessionToken,omitempty"`
}

// s3Keys are the file names read from a Secret volume for an S3 target.
var s3Keys = []string{"type", "endpoint", "region", "bucket", "prefix", "pathStyle", "caBundle", "accessKeyID", "secretAccessKey", "sessionToken"}

// String describes the target without credentials.
func (t S3Target) String() string {
	return fmt.Sprintf("s3 %s bucket %s prefix %q (region %s, path-style %v)", t.Endpoint, t.Bucket, t.Prefix, t.region(), t.PathStyle)
}

// GoString keeps %#v from printing secrets too.
func (t S3Target) GoString() string { return "archiver.S3Target{" + t.String() + "}" }

func (t S3Target) region() string {
	if t.Region == "" {
		return "us-east-1"
	}
	return t.Region
}

// BaseDir is the remote path the archiver builds object names under ("/" + Prefix): the S3 Remote maps a path
// to the key without its leading "/".
func (t S3Target) BaseDir() string { return "/" + t.Prefix }

// bucketName is S3's rule for new buckets (3-63 lower-case letters, digits, dots and hyphens).
var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// Validate says what is wrong with which key (all problems at once), never quoting a credential.
func (t S3Target) Validate() error {
	var errs []error
	if t.Type != "s3" {
		errs = append(errs, fmt.Errorf("type %q: must be s3", t.Type))
	}
	if err := validateEndpoint(t.Endpoint); err != nil {
		errs = append(errs, err)
	}
	if t.Region != "" && !regexp.MustCompile(`^[a-z0-9-]{1,32}$`).MatchString(t.Region) {
		errs = append(errs, fmt.Errorf("region %q: not a region name", t.Region))
	}
	if !bucketName.MatchString(t.Bucket) {
		errs = append(errs, fmt.Errorf("bucket %q: not a bucket name (3-63 of a-z 0-9 . -)", t.Bucket))
	}
	if p := t.Prefix; p != "" && (strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || path.Clean("/"+p) != "/"+p || strings.ContainsAny(p, "\\\x00\n\r")) {
		errs = append(errs, fmt.Errorf("prefix %q: must be a clean relative key prefix without leading or trailing /", p))
	}
	if t.CABundle != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(t.CABundle)) {
		errs = append(errs, errors.New("caBundle: no PEM certificate in it"))
	}
	if t.AccessKeyID == "" {
		errs = append(errs, errors.New("accessKeyID: required"))
	} else if strings.ContainsAny(t.AccessKeyID, " \t\r\n") {
		errs = append(errs, errors.New("accessKeyID: contains white space"))
	}
	if t.SecretAccessKey == "" {
		errs = append(errs, errors.New("secretAccessKey: required"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("s3 target: %w", errors.Join(errs...))
	}
	return nil
}

func validateEndpoint(e string) error {
	if e == "" {
		return errors.New("endpoint: required (https://host[:port])")
	}
	u, err := url.Parse(e)
	switch {
	case err != nil:
		return fmt.Errorf("endpoint %q: not a URL", e)
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("endpoint %q: scheme must be https (or http for a loopback server)", e)
	case u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("endpoint %q: must be scheme://host[:port] only", e)
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return fmt.Errorf("endpoint %q: plain http only to a loopback address; use https (credentials and dumps cross the network)", e)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("endpoint %q: port out of range 1-65535", e)
		}
	}
	return nil
}

func isLoopback(h string) bool { return h == "localhost" || h == "127.0.0.1" || h == "::1" }

// TargetType is the archive target Secret's type: "sftp" (also when it has no type key) or "s3".
func TargetType(p string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("read archive target: %w", err)
	}
	var typ string
	if st.IsDir() {
		b, err := os.ReadFile(filepath.Join(p, "type"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("read archive target %s: %w", filepath.Join(p, "type"), err)
		}
		typ = strings.TrimSpace(string(b))
	} else {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("read archive target: %w", err)
		}
		var v struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return "", fmt.Errorf("parse archive target %s: %v", p, err)
		}
		typ = v.Type
	}
	switch typ {
	case "", "sftp":
		return "sftp", nil
	case "s3":
		return "s3", nil
	}
	return "", fmt.Errorf("archive target %s: type %q: must be sftp or s3", p, typ)
}

// LoadS3Target reads an S3Target from a Secret volume directory or a JSON file and validates it.
func LoadS3Target(p string) (S3Target, error) {
	st, err := os.Stat(p)
	if err != nil {
		return S3Target{}, fmt.Errorf("read s3 target: %w", err)
	}
	var t S3Target
	if st.IsDir() {
		vals := map[string]string{}
		for _, k := range s3Keys {
			b, err := os.ReadFile(filepath.Join(p, k))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return S3Target{}, fmt.Errorf("read s3 target %s: %w", filepath.Join(p, k), err)
			}
			vals[k] = strings.TrimSpace(string(b))
		}
		t = S3Target{Type: vals["type"], Endpoint: vals["endpoint"], Region: vals["region"], Bucket: vals["bucket"],
			Prefix: vals["prefix"], CABundle: vals["caBundle"], AccessKeyID: vals["accessKeyID"],
			SecretAccessKey: vals["secretAccessKey"], SessionToken: vals["sessionToken"]}
		if s := vals["pathStyle"]; s != "" {
			if t.PathStyle, err = strconv.ParseBool(s); err != nil {
				return S3Target{}, fmt.Errorf("s3 target %s: pathStyle %q is not true or false", filepath.Join(p, "pathStyle"), s)
			}
		}
	} else {
		b, err := os.ReadFile(p)
		if err != nil {
			return S3Target{}, fmt.Errorf("read s3 target: %w", err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&t); err != nil {
			return S3Target{}, fmt.Errorf("parse s3 target %s: %v", p, err)
		}
	}
	if err := t.Validate(); err != nil {
		return S3Target{}, fmt.Errorf("%s: %w", p, err)
	}
	return t, nil
}
