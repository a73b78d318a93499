package archiver

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
)

// s3Upload is one multipart upload to the final key: one part per Write (one chunk), each sent with Content-MD5 and
// its signed sha256 and checked against the ETag the server answers. Its Token (journalled with every acknowledged
// prefix) names the upload ID, the number of parts and a digest of their ETags, so that a resumed upload can check
// that the server's parts are the ones the journal counted.
type s3Upload struct {
	r     *s3Remote
	tmp   string
	key   string
	id    string
	parts []minio.CompletePart
	sizes int64
	md5s  []byte // the parts' binary MD5s, in order: the multipart ETag is md5(md5s)-N
}

// s3Token is the Token: what the journal needs to continue the upload.
type s3Token struct {
	UploadID string `json:"uploadId"`
	Parts    int    `json:"parts"`
	ETags    string `json:"etags"` // hex md5 of the parts' binary MD5s, in order
}

func (u *s3Upload) Token() string {
	if u.id == "" {
		return ""
	}
	sum := md5.Sum(u.md5s)
	b, _ := json.Marshal(s3Token{UploadID: u.id, Parts: len(u.parts), ETags: hex.EncodeToString(sum[:])})
	return string(b)
}

// Resume implements Upload: continue the journalled multipart upload when the server holds exactly its parts,
// else abort it and start a new one (saying why).
func (u *s3Upload) Resume(p Prefix) (int64, string, error) {
	if p.Size > 0 {
		why, err := u.reopen(p)
		if err != nil {
			return 0, "", err
		}
		if why == "" {
			return p.Size, "", nil
		}
		return 0, why, u.create()
	}
	return 0, "", u.create()
}

func (u *s3Upload) reopen(p Prefix) (string, error) {
	var t s3Token
	if err := json.Unmarshal([]byte(p.Token), &t); err != nil || t.UploadID == "" || t.Parts < 1 {
		return fmt.Sprintf("the journal names no multipart upload for %s (the journal says %d bytes were acknowledged)", u.key, p.Size), nil
	}
	parts, err := u.listParts(t.UploadID)
	if code := minio.ToErrorResponse(err).Code; code == "NoSuchUpload" {
		return fmt.Sprintf("the server no longer knows multipart upload %s of %s (aborted, or ended by a lifecycle rule)", t.UploadID, u.key), nil
	}
	if err != nil {
		return "", err
	}
	u.id = t.UploadID
	byNum := partsByNumber(parts)
	for n := 1; n <= t.Parts; n++ {
		pt, ok := latest(byNum[n])
		if !ok {
			return u.discard(fmt.Sprintf("the server has no part %d of multipart upload %s of %s, the journal says %d were acknowledged", n, t.UploadID, u.key, t.Parts))
		}
		sum, err := hex.DecodeString(strings.Trim(pt.ETag, `"`))
		if err != nil || len(sum) != md5.Size {
			return u.discard(fmt.Sprintf("part %d of multipart upload %s of %s has no MD5 ETag (%q)", n, t.UploadID, u.key, pt.ETag))
		}
		u.add(n, pt.ETag, pt.Size, sum)
	}
	if sum := md5.Sum(u.md5s); u.sizes != p.Size || hex.EncodeToString(sum[:]) != t.ETags {
		return u.discard(fmt.Sprintf("the first %d parts of multipart upload %s of %s hold %d bytes with other ETags than the %d bytes the journal acknowledged", t.Parts, t.UploadID, u.key, u.sizes, p.Size))
	}
	return "", nil
}

// discard aborts the upload that cannot be continued and returns why.
func (u *s3Upload) discard(why string) (string, error) {
	_ = u.Abort()
	u.id, u.parts, u.sizes, u.md5s = "", nil, 0, nil
	return why, nil
}

func (u *s3Upload) add(n int, etag string, size int64, sum []byte) {
	u.parts = append(u.parts, minio.CompletePart{PartNumber: n, ETag: etag})
	u.sizes += size
	u.md5s = append(u.md5s, sum...)
}

// create aborts what an earlier attempt of this key left (keeplog's own abandoned uploads: the key is this item's)
// and starts a new multipart upload.
func (u *s3Upload) create() error {
	if err := u.r.abortAll(u.key, ""); err != nil {
		return err
	}
	ctx, cancel := u.r.ctx()
	defer cancel()
	id, err := u.r.d.core.NewMultipartUpload(ctx, u.r.d.t.Bucket, u.key, minio.PutObjectOptions{
		UserMetadata: u.r.d.metadata(u.key), ContentType: "application/octet-stream"})
	if err != nil {
		return s3Error(u.r.d.t, "start multipart upload of", u.key, err)
	}
	u.id, u.parts, u.sizes, u.md5s = id, nil, 0, nil
	return nil
}

// listParts returns the parts the server holds of upload id, in part order.
func (u *s3Upload) listParts(id string) ([]minio.ObjectPart, error) {
	ctx, cancel := u.r.ctx()
	defer cancel()
	var out []minio.ObjectPart
	marker := 0
	for {
		res, err := u.r.d.core.ListObjectParts(ctx, u.r.d.t.Bucket, u.key, id, marker, 1000)
		if err != nil {
			if minio.ToErrorResponse(err).Code == "NoSuchUpload" {
				return nil, err
			}
			return nil, s3Error(u.r.d.t, "list parts of", u.key, err)
		}
		out = append(out, res.ObjectParts...)
		if !res.IsTruncated || res.NextPartNumberMarker <= marker {
			return out, nil
		}
		marker = res.NextPartNumberMarker
	}
}

// Write implements Upload: the bytes at off are the next part. The part is checked twice: the server refuses it
// when its bytes do not match Content-MD5 or the signed sha256, and its answered ETag must be the MD5 sent.
func (u *s3Upload) Write(off int64, r io.Reader, n int64) error {
	if off != u.sizes {
		return fmt.Errorf("s3 upload of %s: write at %d, the parts hold %d bytes", u.key, off, u.sizes)
	}
	data, err := peekBytes(r, n)
	if err != nil {
		return err
	}
	m, s := md5.Sum(data), sha256.Sum256(data)
	num := len(u.parts) + 1
	// The bandwidth limit paces the body (the throttled reader, which also ends it at shutdown); the timeout ends a
	// part whose connection hangs (a server that stops answering without closing it).
	ctx, cancel := context.WithTimeout(context.Background(), partTimeout)
	defer cancel()
	pt, err := u.r.d.core.PutObjectPart(ctx, u.r.d.t.Bucket, u.key, u.id, num, r, n, minio.PutObjectPartOptions{
		Md5Base64: base64.StdEncoding.EncodeToString(m[:]), Sha256Hex: hex.EncodeToString(s[:])})
	if err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchUpload" {
			return startOver(fmt.Errorf("s3 upload of %s: the server no longer knows multipart upload %s", u.key, u.id))
		}
		return s3Error(u.r.d.t, fmt.Sprintf("upload part %d of", num), u.key, err)
	}
	if got := strings.Trim(pt.ETag, `"`); got != hex.EncodeToString(m[:]) {
		return fmt.Errorf("s3 upload of %s: part %d has ETag %s, the MD5 of the bytes sent is %x", u.key, num, got, m)
	}
	u.add(num, pt.ETag, n, m[:])
	return nil
}

// peekBytes returns the n bytes r will yield without consuming them: the chunk a throttled reader sends (the MD5 is
// needed before the part goes out); another reader is read whole (tests).
func peekBytes(r io.Reader, n int64) ([]byte, error) {
	if t, ok := r.(*throttled); ok && int64(len(t.b)) == n {
		return t.b, nil
	}
	return nil, fmt.Errorf("s3 upload: a part must come as one prepared chunk (%T)", r)
}

// Commit implements Upload: the server's parts must be exactly the ones sent, size bytes in all. The upload is
// completed by Rename, after the manifest is in place.
func (u *s3Upload) Commit(size int64) error {
	if u.sizes != size {
		return startOver(fmt.Errorf("s3 upload of %s: the parts hold %d bytes, %d were sent", u.key, u.sizes, size))
	}
	if len(u.parts) == 0 { // an empty file: S3 needs one part, even if empty
		sum := md5.Sum(nil)
		ctx, cancel := u.r.ctx()
		defer cancel()
		pt, err := u.r.d.core.PutObjectPart(ctx, u.r.d.t.Bucket, u.key, u.id, 1, strings.NewReader(""), 0, minio.PutObjectPartOptions{
			Md5Base64: base64.StdEncoding.EncodeToString(sum[:])})
		if err != nil {
			return s3Error(u.r.d.t, "upload part 1 of", u.key, err)
		}
		u.add(1, pt.ETag, 0, sum[:])
	}
	parts, err := u.listParts(u.id)
	if err != nil {
		return startOver(fmt.Errorf("s3 upload of %s: %w", u.key, err))
	}
	byNum := partsByNumber(parts)
	for _, want := range u.parts {
		if !hasETag(byNum[want.PartNumber], want.ETag) {
			return startOver(fmt.Errorf("s3 upload of %s: the server has not part %d as it was sent (ETag %s)", u.key, want.PartNumber, want.ETag))
		}
	}
	u.r.mu.Lock()
	u.r.pending[u.tmp] = u
	u.r.mu.Unlock()
	return nil
}

// complete completes the multipart upload and checks the object: its size, and its ETag, which S3 makes the MD5
// of the parts' MD5s: with every part's MD5 checked at upload, the object holds exactly the bytes whose sha256 the
// manifest records.
func (u *s3Upload) complete() error {
	ctx, cancel := u.r.ctx()
	defer cancel()
	if _, err := u.r.d.core.CompleteMultipartUpload(ctx, u.r.d.t.Bucket, u.key, u.id, u.parts, minio.PutObjectOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchUpload" {
			return startOver(fmt.Errorf("s3 upload of %s: the server no longer knows multipart upload %s", u.key, u.id))
		}
		return s3Error(u.r.d.t, "complete multipart upload of", u.key, err)
	}
	oi, err := u.r.d.core.StatObject(ctx, u.r.d.t.Bucket, u.key, minio.StatObjectOptions{})
	if err != nil {
		return s3Error(u.r.d.t, "stat", u.key, err)
	}
	sum := md5.Sum(u.md5s)
	want := fmt.Sprintf("%x-%d", sum, len(u.parts))
	if oi.Size != u.sizes || strings.Trim(oi.ETag, `"`) != want {
		return permanentf("s3 object %s: %d bytes with ETag %s after completion; %d bytes with ETag %s were uploaded", u.key, oi.Size, oi.ETag, u.sizes, want)
	}
	return nil
}

// Abort implements Upload: the multipart upload is aborted (its parts deleted).
func (u *s3Upload) Abort() error {
	if u.id == "" {
		return nil
	}
	ctx, cancel := u.r.ctx()
	defer cancel()
	if err := u.r.d.core.AbortMultipartUpload(ctx, u.r.d.t.Bucket, u.key, u.id); err != nil && minio.ToErrorResponse(err).Code != "NoSuchUpload" {
		return s3Error(u.r.d.t, "abort multipart upload of", u.key, err)
	}
	return nil
}

// Close implements Upload: the multipart upload stays for a later Resume.
func (u *s3Upload) Close() error { return nil }

// partTimeout bounds the upload of one part (at most 64 MiB): 10 minutes is above 100 KiB/s.
const partTimeout = 10 * time.Minute

// s3MinPart is S3's minimum size of a part other than the last.
const s3MinPart = 5 << 20

func (u *s3Upload) minWrite() int64 { return s3MinPart }

// partsByNumber groups a part listing by part number. A server may list a part number more than once when it was
// uploaded again (SeaweedFS does, after an interrupted part was sent again): on S3 the last upload of a number is
// the part, and CompleteMultipartUpload names the ETag it means.
func partsByNumber(parts []minio.ObjectPart) map[int][]minio.ObjectPart {
	m := map[int][]minio.ObjectPart{}
	for _, p := range parts {
		m[p.PartNumber] = append(m[p.PartNumber], p)
	}
	return m
}

// latest is the last uploaded of a part number's entries (the last listed among equal times).
func latest(ps []minio.ObjectPart) (minio.ObjectPart, bool) {
	if len(ps) == 0 {
		return minio.ObjectPart{}, false
	}
	best := ps[0]
	for _, p := range ps[1:] {
		if !p.LastModified.Before(best.LastModified) {
			best = p
		}
	}
	return best, true
}

// hasETag says whether one of a part number's entries has the ETag etag.
func hasETag(ps []minio.ObjectPart, etag string) bool {
	for _, p := range ps {
		if strings.Trim(p.ETag, `"`) == strings.Trim(etag, `"`) {
			return true
		}
	}
	return false
}
