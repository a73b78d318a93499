package archiver

import (
	"fmt"
	"net/http"

	"github.com/minio/minio-go/v7"
)

// s3Error turns a minio-go error into one a user can act on: it names the cause (wrong credentials, a missing
// bucket, clock skew, a server failing with 5xx) and what to check, with the S3 error code and request ID for the
// server's operator. It never quotes a credential: S3 error responses carry none, and none is added.
func s3Error(t S3Target, op, key string, err error) error {
	er := minio.ToErrorResponse(err)
	what := fmt.Sprintf("s3 %s %s/%s", op, t.Bucket, key)
	var cause string
	switch {
	case er.Code == "NoSuchKey" || (er.StatusCode == http.StatusNotFound && er.Code != "NoSuchBucket" && er.Code != "NoSuchUpload"):
		return notExist{fmt.Errorf("%s: not found: %w", what, err)}
	case er.Code == "InvalidAccessKeyId" || er.Code == "SignatureDoesNotMatch" || er.Code == "InvalidToken" || er.Code == "ExpiredToken":
		cause = fmt.Sprintf("wrong credentials: the server refused accessKeyID/secretAccessKey of the archive target Secret (%s)", er.Code)
	case er.Code == "RequestTimeTooSkewed":
		cause = "clock skew: this node's clock and the S3 server's differ by more than S3 allows (RequestTimeTooSkewed); check NTP on the node"
	case er.Code == "AccessDenied" || er.StatusCode == http.StatusForbidden:
		cause = fmt.Sprintf("access denied: the credentials work but may not write to bucket %s (%s); check the bucket policy", t.Bucket, codeOr(er))
	case er.Code == "NoSuchBucket":
		cause = fmt.Sprintf("missing bucket: bucket %s does not exist on %s (keeplog does not create it)", t.Bucket, t.Endpoint)
	case er.StatusCode >= 500 || er.Code == "SlowDown" || er.Code == "InternalError" || er.Code == "ServiceUnavailable":
		cause = fmt.Sprintf("server error: %s answers HTTP %d %s after retries (a 5xx storm or an overloaded server); retrying with backoff", t.Endpoint, er.StatusCode, codeOr(er))
	case er.Code == "":
		return fmt.Errorf("%s: %w", what, err) // a transport error (refused, reset, timed out): its text says which
	default:
		cause = fmt.Sprintf("HTTP %d %s", er.StatusCode, er.Code)
	}
	if er.RequestID != "" {
		cause += " [request " + er.RequestID + "]"
	}
	return &s3Err{msg: what + ": " + cause, err: err}
}

func codeOr(er minio.ErrorResponse) string {
	if er.Code == "" {
		return http.StatusText(er.StatusCode)
	}
	return er.Code
}

// s3Err keeps minio-go's error for errors.As and says the cause.
type s3Err struct {
	msg string
	err error
}

func (e *s3Err) Error() string { return e.msg }
func (e *s3Err) Unwrap() error { return e.err }
