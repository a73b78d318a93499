package archiver

import (
	"errors"
	"fmt"

	"github.com/pkg/sftp"
)

// A full archive server must be reported as such: OpenSSH answers a write that fails with ENOSPC or EDQUOT with
// the generic SSH_FX_FAILURE "Failure", which says nothing. Where the server offers statvfs@openssh.com keeplog
// asks it for the free space before an upload (a file that cannot fit is not sent, so the attempt costs no
// bandwidth and leaves nothing behind) and again after a write failed, and says "archive server full". The error
// stays retryable: space is freed on the server, and the next attempt goes.

const (
	statVFSExtension = "statvfs@openssh.com"
	// spaceSlack is what an upload needs beyond the file's bytes: its manifest and the filesystem's block rounding.
	spaceSlack = 64 << 10
)

// freeSpace returns the bytes an unprivileged user may still write in dir on the server; ok is false when the
// server cannot tell (no statvfs@openssh.com, or it failed).
func freeSpace(c *sftp.Client, dir string) (free uint64, ok bool) {
	if _, has := c.HasExtension(statVFSExtension); !has {
		return 0, false
	}
	vfs, err := c.StatVFS(dir)
	if err != nil {
		return 0, false
	}
	return vfs.Bavail * vfs.Frsize, true
}

// checkSpace returns a retryable "archive server full" error when dir on the server has less room than size bytes
// need; nil when they fit or the server cannot tell.
func checkSpace(c *sftp.Client, dir string, size int64) error {
	need := uint64(size) + spaceSlack
	if free, ok := freeSpace(c, dir); ok && free < need {
		return fmt.Errorf("archive server full: %d bytes free in %s, need %d", free, dir, need)
	}
	return nil
}

// serverError explains a failed write of size bytes into dir: when the server is out of space it says so (err is
// kept for the details). Call it after the partial file is removed, so that the free space is what a retry has.
func serverError(c *sftp.Client, dir string, size int64, err error) error {
	var se *sftp.StatusError
	if !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxFailure {
		return err
	}
	need := uint64(size) + spaceSlack
	free, ok := freeSpace(c, dir)
	switch {
	case !ok:
		return fmt.Errorf("%w (SSH_FX_FAILURE: the archive server may be full; it cannot tell its free space)", err)
	case free < need:
		return fmt.Errorf("archive server full: %d bytes free in %s, need %d: %w", free, dir, need, err)
	}
	return err
}
