package archiver

import (
	"errors"
	"strings"

	"golang.org/x/crypto/ssh/knownhosts"
)

// handshakeCause says in the operator's words why an SSH handshake failed, for the front of the error (the log, the
// ArchiveRetrying Event, the pod's status file), as s3errors.go does for S3: x/crypto/ssh's own text ("unable to
// authenticate, attempted methods [none publickey]") is kept after it. "" when the cause is not one of these.
func handshakeCause(err error) string {
	var ke *knownhosts.KeyError
	switch {
	case errors.As(err, &ke) && len(ke.Want) > 0:
		return "the server's host key is not the one knownHosts names (changed host key, or another server): "
	case errors.As(err, &ke):
		return "the server is not in knownHosts: "
	case strings.Contains(err.Error(), "unable to authenticate"):
		return "wrong credentials (the server refused the user with this privateKey or password): "
	}
	return ""
}
