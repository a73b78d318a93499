package archiver

import (
	"errors"
	"io"
)

// Remote is the archive server as the journal and upload logic see it (issue 14's "Target" interface; the name
// Target already belongs to the SFTP server's settings, which cmd/keeplog loads from a Secret). SFTP implements it
// (*Conn, from SSHDialer); an object store can implement it without any change to the journal: the journal only
// ever records what Upload reports — the acknowledged contiguous prefix of an upload and the Remote's own Token for
// it — and hands that back to Resume after a restart.
type Remote interface {
	// Stat returns the size of the file at p; an error wrapping fs.ErrNotExist when there is none.
	Stat(p string) (int64, error)
	// ReadSmall returns the content of a small file (a manifest), at most limit bytes of it.
	ReadSmall(p string, limit int64) ([]byte, error)
	// PutSmall writes a small file through the temporary name tmp and renames it to final, replacing it.
	PutSmall(final, tmp string, data []byte) error
	// MkdirAll creates a directory and its parents.
	MkdirAll(dir string) error
	// Remove deletes a file; a file that is not there is not an error.
	Remove(p string) error
	// Rename renames from to to, replacing to.
	Rename(from, to string) error
	// CheckSpace returns a retryable error saying "archive server full" when need more bytes do not fit in dir;
	// nil when they fit or the server cannot tell.
	CheckSpace(dir string, need int64) error
	// Upload returns the session that writes one file under its temporary name tmp. Nothing is sent until Resume.
	Upload(tmp string) Upload
	// Close ends the connection.
	Close() error
}

// Prefix is what the journal knows the server holds of an interrupted upload.
type Prefix struct {
	// Size is the number of stored bytes, contiguous from the start, whose writes the server acknowledged.
	Size int64
	// Tail is the sha256 of the last TailLen bytes of that prefix: a cheap check that the server's bytes are the
	// ones that were sent (a temporary file replaced or rewritten between two runs has other bytes there).
	Tail    []byte
	TailLen int64
	// Token is the Remote's own state of the upload (an object store's multipart upload ID); "" for SFTP.
	Token string
}

// Upload is one file being written under its temporary name, in chunks. Writes within a chunk may be in flight
// concurrently; Write returns only once all of them were acknowledged, so that what the caller records after it
// returns (and after every Write before it returned) is a prefix the server holds. Chunks go one after another
// unless the Upload is an overlapper.
type Upload interface {
	// Resume prepares the upload to continue after p and returns the offset it continues from: p.Size when the
	// server holds exactly that prefix (a longer temporary file is cut back to it), or 0 with the reason when the
	// upload must start over (no temporary file, a shorter one, or one whose content changed), and then the
	// temporary file is new and empty. Resume(Prefix{}) starts a new upload.
	Resume(p Prefix) (from int64, why string, err error)
	// Write sends the n bytes r yields at offset off and returns once the server acknowledged all of them. An
	// error wrapping errStartOver means the partial file was discarded (a full server): the next attempt starts
	// from 0.
	Write(off int64, r io.Reader, n int64) error
	// Token is the state to record with the acknowledged prefix (see Prefix.Token).
	Token() string
	// Commit finishes writing and checks that the temporary file holds exactly size bytes.
	Commit(size int64) error
	// Abort closes the upload and removes the temporary file.
	Abort() error
	// Close ends the session and keeps what the server has, for a later Resume (an interrupted upload).
	Close() error
}

// errStartOver marks upload errors after which the server no longer holds the partial file.
var errStartOver = errors.New("the partial upload was discarded")

type startOverError struct{ err error }

func (e *startOverError) Error() string { return e.err.Error() }
func (e *startOverError) Unwrap() []error {
	return []error{e.err, errStartOver}
}

// startOver wraps err so that errors.Is(err, errStartOver) holds and the message stays err's.
func startOver(err error) error {
	if err == nil {
		return nil
	}
	return &startOverError{err: err}
}
