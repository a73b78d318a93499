package archiver

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/keeplog/keeplog/pkg/api"
)

// S3Dialer opens sessions to an S3-compatible object store (the S3 Remote). One minio-go client is shared by all
// sessions: it holds no connection state beyond its HTTP keep-alive pool.
type S3Dialer struct {
	t       S3Target
	core    *minio.Core
	node    string
	timeout time.Duration
}

// S3DialerOptions tune an S3Dialer; zero values take defaults.
type S3DialerOptions struct {
	// NodeName goes into every object's x-amz-meta-node header.
	NodeName string
	// Timeout bounds one small request (a stat, a list, a manifest) and the wait for a response's headers. 30s.
	Timeout time.Duration
	// Retries is how often minio-go retries a failed small request (5xx, a dropped connection) before the archiver's
	// own backoff takes over. 3.
	Retries int
}

// NewS3Dialer validates t and prepares the client. Nothing is sent until Dial.
func NewS3Dialer(t S3Target, o S3DialerOptions) (*S3Dialer, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Retries == 0 {
		o.Retries = 3
	}
	u, _ := url.Parse(t.Endpoint) // validated
	tr, err := minio.DefaultTransport(u.Scheme == "https")
	if err != nil {
		return nil, fmt.Errorf("s3 target: %w", err)
	}
	tr.ResponseHeaderTimeout = 2 * o.Timeout
	tr.Proxy = nil // a dump goes to the configured endpoint only
	if t.CABundle != "" {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(t.CABundle))
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	lookup := minio.BucketLookupDNS
	if t.PathStyle {
		lookup = minio.BucketLookupPath
	}
	core, err := minio.NewCore(u.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(t.AccessKeyID, t.SecretAccessKey, t.SessionToken),
		Secure: u.Scheme == "https", Transport: tr, Region: t.region(), BucketLookup: lookup, MaxRetries: o.Retries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 target endpoint: %w", err)
	}
	core.SetAppInfo("keeplog", "1")
	return &S3Dialer{t: t, core: core, node: o.NodeName, timeout: o.Timeout}, nil
}

// String describes the target without credentials.
func (d *S3Dialer) String() string { return d.t.String() }

// Dial checks that the bucket is there and the credentials work: one listing of keeplog's multipart uploads under
// the prefix (a GET, whose error body names the cause; a HEAD of the bucket has none), which keeplog needs to be
// allowed anyway.
func (d *S3Dialer) Dial(ctx context.Context) (Remote, error) {
	cctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if _, err := d.core.ListMultipartUploads(cctx, d.t.Bucket, d.t.Prefix, "", "", "", 1); err != nil {
		return nil, s3Error(d.t, "check bucket", d.t.Prefix, err)
	}
	return &s3Remote{d: d, pending: map[string]*s3Upload{}}, nil
}

// s3Remote is the S3 Remote. S3 has no directories, no rename and no partial objects: an upload is a multipart
// upload to the final key, which appears only when it is completed; "Rename" of the temporary name completes it
// (after the manifest, a plain PUT, is in place), so the dump object never exists without its manifest.
type s3Remote struct {
	d       *S3Dialer
	mu      sync.Mutex
	pending map[string]*s3Upload // committed, not yet completed multipart uploads by temporary name
}

var _ Remote = (*s3Remote)(nil)

// key is the object key of a remote path ("/prefix/ns/pod/..." -> "prefix/ns/pod/...").
func s3Key(p string) string { return strings.TrimPrefix(p, "/") }

// finalOfTemp is the final path a temporary path (tempPath) stands for; ok is false for another path.
func finalOfTemp(tmp string) (string, bool) {
	dir, file := path.Split(tmp)
	i := strings.LastIndex(file, api.TempFileMarker)
	if !strings.HasPrefix(file, ".") || i < 1 {
		return "", false
	}
	return dir + file[1:i], true
}

func (r *s3Remote) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), r.d.timeout)
}

// Stat implements Remote.
func (r *s3Remote) Stat(p string) (int64, error) {
	ctx, cancel := r.ctx()
	defer cancel()
	oi, err := r.d.core.StatObject(ctx, r.d.t.Bucket, s3Key(p), minio.StatObjectOptions{})
	if err != nil {
		return 0, s3Error(r.d.t, "stat", s3Key(p), err)
	}
	return oi.Size, nil
}

// ReadSmall implements Remote.
func (r *s3Remote) ReadSmall(p string, limit int64) ([]byte, error) {
	ctx, cancel := r.ctx()
	defer cancel()
	rc, _, _, err := r.d.core.GetObject(ctx, r.d.t.Bucket, s3Key(p), minio.GetObjectOptions{})
	if err != nil {
		return nil, s3Error(r.d.t, "get", s3Key(p), err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit))
	if err != nil {
		return nil, s3Error(r.d.t, "get", s3Key(p), err)
	}
	return b, nil
}

// PutSmall implements Remote: one PUT with Content-MD5 and the signed sha256, so the server checks the bytes. S3
// replaces an object atomically; tmp is not needed.
func (r *s3Remote) PutSmall(final, _ string, data []byte) error {
	ctx, cancel := r.ctx()
	defer cancel()
	m, s := md5.Sum(data), sha256.Sum256(data)
	key := s3Key(final)
	info, err := r.d.core.PutObject(ctx, r.d.t.Bucket, key, bytes.NewReader(data), int64(len(data)),
		base64.StdEncoding.EncodeToString(m[:]), hex.EncodeToString(s[:]),
		minio.PutObjectOptions{UserMetadata: r.d.metadata(key), ContentType: "application/json"})
	if err != nil {
		return s3Error(r.d.t, "put", key, err)
	}
	if info.Size != int64(len(data)) {
		return fmt.Errorf("s3 put %s: the server stored %d bytes, %d were sent", key, info.Size, len(data))
	}
	return nil
}

// MkdirAll implements Remote: S3 has no directories.
func (r *s3Remote) MkdirAll(string) error { return nil }

// CheckSpace implements Remote: an object store does not say how full it is.
func (r *s3Remote) CheckSpace(string, int64) error { return nil }

// Remove implements Remote. The temporary name of a dump stands for its multipart uploads: removing it aborts
// them (an abandoned upload's parts would otherwise be stored, and billed, until a lifecycle rule ends them).
func (r *s3Remote) Remove(p string) error {
	if final, ok := finalOfTemp(p); ok {
		if strings.HasSuffix(final, manifestSuffix) {
			return nil // manifests are PUT under their final name: there is no temporary object
		}
		return r.abortAll(s3Key(final), "")
	}
	ctx, cancel := r.ctx()
	defer cancel()
	if err := r.d.core.RemoveObject(ctx, r.d.t.Bucket, s3Key(p), minio.RemoveObjectOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil
		}
		return s3Error(r.d.t, "delete", s3Key(p), err)
	}
	return nil
}

// abortAll aborts the multipart uploads in progress for key, except keep.
func (r *s3Remote) abortAll(key, keep string) error {
	ctx, cancel := r.ctx()
	defer cancel()
	ids, err := r.d.uploadsOf(ctx, key)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if id == keep {
			continue
		}
		if err := r.d.core.AbortMultipartUpload(ctx, r.d.t.Bucket, key, id); err != nil && minio.ToErrorResponse(err).Code != "NoSuchUpload" {
			return s3Error(r.d.t, "abort multipart upload of", key, err)
		}
	}
	return nil
}

// uploadsOf lists the IDs of the multipart uploads in progress for exactly key.
func (d *S3Dialer) uploadsOf(ctx context.Context, key string) ([]string, error) {
	var ids []string
	keyMarker, idMarker := "", ""
	for {
		res, err := d.core.ListMultipartUploads(ctx, d.t.Bucket, key, keyMarker, idMarker, "", 1000)
		if err != nil {
			return nil, s3Error(d.t, "list multipart uploads of", key, err)
		}
		for _, u := range res.Uploads {
			if u.Key == key {
				ids = append(ids, u.UploadID)
			}
		}
		if !res.IsTruncated || (res.NextKeyMarker == keyMarker && res.NextUploadIDMarker == idMarker) {
			return ids, nil
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
}

// Rename implements Remote for a committed upload's temporary name: it completes the multipart upload (the
// manifest is already in place) and checks the object the server made of it.
func (r *s3Remote) Rename(from, to string) error {
	r.mu.Lock()
	u := r.pending[from]
	delete(r.pending, from)
	r.mu.Unlock()
	if u == nil {
		return fmt.Errorf("s3: %s is not a committed upload (S3 cannot rename objects)", from)
	}
	if final, _ := finalOfTemp(from); final != to {
		return fmt.Errorf("s3: the upload of %s cannot become %s", final, to)
	}
	return u.complete()
}

// Upload implements Remote.
func (r *s3Remote) Upload(tmp string) Upload {
	final, _ := finalOfTemp(tmp)
	return &s3Upload{r: r, tmp: tmp, key: s3Key(final)}
}

// Close implements Remote.
func (r *s3Remote) Close() error { return nil }

// metadata are the x-amz-meta-* headers of an object: the pod and container its key names, and the node.
func (d *S3Dialer) metadata(key string) map[string]string {
	rel := strings.TrimPrefix(key, d.t.Prefix)
	parts := strings.SplitN(strings.TrimPrefix(rel, "/"), "/", 5)
	m := map[string]string{"node": d.node}
	for i, name := range []string{"namespace", "pod", "uid", "container"} {
		if i < len(parts)-1 {
			m[name] = parts[i]
		}
	}
	return m
}

// notExist wraps err so that errors.Is(err, fs.ErrNotExist) holds.
type notExist struct{ error }

func (e notExist) Unwrap() []error { return []error{e.error, fs.ErrNotExist} }
