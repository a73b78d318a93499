package archiver

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sync"

	"github.com/pkg/sftp"
)

// *Conn is the SFTP Remote.
var _ Remote = (*Conn)(nil)

// Stat implements Remote.
func (c *Conn) Stat(p string) (int64, error) {
	st, err := c.SFTP.Stat(p)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// ReadSmall implements Remote.
func (c *Conn) ReadSmall(p string, limit int64) ([]byte, error) {
	f, err := c.SFTP.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// PutSmall implements Remote.
func (c *Conn) PutSmall(final, tmp string, data []byte) error {
	if err := putSmall(c.SFTP, final, tmp, data); err != nil {
		return serverError(c.SFTP, path.Dir(final), int64(len(data)), err)
	}
	return nil
}

// MkdirAll implements Remote.
func (c *Conn) MkdirAll(dir string) error {
	if err := c.SFTP.MkdirAll(dir); err != nil {
		return fmt.Errorf("create remote directory %s: %w", dir, err)
	}
	return nil
}

// Remove implements Remote.
func (c *Conn) Remove(p string) error {
	if err := c.SFTP.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove remote file %s: %w", p, err)
	}
	return nil
}

// Rename implements Remote.
func (c *Conn) Rename(from, to string) error { return renameOver(c.SFTP, from, to) }

// CheckSpace implements Remote.
func (c *Conn) CheckSpace(dir string, need int64) error { return checkSpace(c.SFTP, dir, need) }

// Upload implements Remote.
func (c *Conn) Upload(tmp string) Upload { return &sftpUpload{c: c.SFTP, tmp: tmp} }

// sftpUpload writes one temporary file at offsets. Resuming needs no state beyond the journal's prefix: the file
// itself is the state, checked by its size and the tail of the prefix read back (one 64 KiB read).
type sftpUpload struct {
	c   *sftp.Client
	tmp string
	f   *sftp.File
	mu  sync.Mutex // one bandwidth-limited write at a time: it writes from the file's offset
}

func (u *sftpUpload) Token() string { return "" }

// overlap: two chunks on the wire at once. WriteAt is safe to call concurrently; the next chunk goes while the
// last bytes of the one before are acknowledged (and journalled).
func (u *sftpUpload) overlap() int { return 2 }

func (u *sftpUpload) Resume(p Prefix) (int64, string, error) {
	if p.Size > 0 {
		why, err := u.reopen(p)
		if err != nil || why == "" {
			return p.Size, "", err
		}
		return 0, why, u.create()
	}
	return 0, "", u.create()
}

// reopen opens the temporary file to write after the prefix p; why says why it cannot be continued.
func (u *sftpUpload) reopen(p Prefix) (string, error) {
	st, err := u.c.Lstat(u.tmp)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("the server has no temporary file %s (the journal says %d bytes were acknowledged)", u.tmp, p.Size), nil
	case err != nil:
		return "", fmt.Errorf("stat remote file %s: %w", u.tmp, err)
	case !st.Mode().IsRegular() || st.Mode().Perm()&0o077 != 0:
		return fmt.Sprintf("the temporary file %s is not a regular owner-only file (mode %v)", u.tmp, st.Mode()), nil
	case st.Size() < p.Size:
		return fmt.Sprintf("the temporary file %s has %d bytes, shorter than the %d the journal says were acknowledged", u.tmp, st.Size(), p.Size), nil
	}
	f, err := u.c.OpenFile(u.tmp, os.O_RDWR)
	if err != nil {
		return "", fmt.Errorf("open remote file %s: %w", u.tmp, err)
	}
	if why := u.checkTail(f, p); why != "" {
		_ = f.Close()
		return why, nil
	}
	if st.Size() > p.Size {
		if err := f.Truncate(p.Size); err != nil {
			_ = f.Close()
			return "", fmt.Errorf("cut remote file %s back to the acknowledged %d bytes: %w", u.tmp, p.Size, err)
		}
	}
	u.f = f
	return "", nil
}

// checkTail reads back the last bytes of the prefix and compares their sha256 with the journal's.
func (u *sftpUpload) checkTail(f *sftp.File, p Prefix) string {
	if p.TailLen <= 0 || p.TailLen > p.Size || len(p.Tail) != sha256.Size {
		return fmt.Sprintf("the journal has no check of the first %d bytes of %s", p.Size, u.tmp)
	}
	buf := make([]byte, p.TailLen)
	if _, err := f.ReadAt(buf, p.Size-p.TailLen); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("cannot read back the temporary file %s: %v", u.tmp, err)
	}
	if sum := sha256.Sum256(buf); !bytes.Equal(sum[:], p.Tail) {
		return fmt.Sprintf("the temporary file %s changed on the server: bytes %d-%d are not the ones sent", u.tmp, p.Size-p.TailLen, p.Size)
	}
	return ""
}

func (u *sftpUpload) create() error {
	f, err := createTemp(u.c, u.tmp)
	if err != nil {
		return err
	}
	u.f = f
	return nil
}

func (u *sftpUpload) Write(off int64, r io.Reader, n int64) error {
	got, err := u.send(off, r, n)
	if err == nil && got != n {
		err = fmt.Errorf("sent %d bytes of %d", got, n)
	}
	if err == nil {
		return nil
	}
	var se *sftp.StatusError
	if errors.As(err, &se) && !isPermanent(err) {
		// The server refused a write (OpenSSH says SSH_FX_FAILURE when it is full): the partial file goes before
		// the retry, which starts over, so that it does not keep a full server full.
		_ = u.Abort()
		return startOver(serverError(u.c, path.Dir(u.tmp), n, fmt.Errorf("upload to %s: %w", u.tmp, err)))
	}
	return fmt.Errorf("upload to %s: %w", u.tmp, err)
}

// send writes with concurrent requests. Without a bandwidth limit the chunk goes as it is, through File.WriteAt:
// ReadFrom would copy every byte into pkg/sftp's own buffer first (4% of an upload's CPU in the profile).
func (u *sftpUpload) send(off int64, r io.Reader, n int64) (int64, error) {
	if b, ok := unlimited(r); ok && int64(len(b)) == n {
		got, err := u.f.WriteAt(b, off)
		r.(*throttled).sent(got)
		return int64(got), err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, err := u.f.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	return u.f.ReadFromWithConcurrency(io.LimitReader(r, n), 0)
}

func (u *sftpUpload) Commit(size int64) error {
	if err := u.f.Close(); err != nil {
		_ = u.c.Remove(u.tmp)
		return startOver(serverError(u.c, path.Dir(u.tmp), size, fmt.Errorf("close remote file %s: %w", u.tmp, err)))
	}
	st, err := u.c.Stat(u.tmp)
	if err != nil {
		return fmt.Errorf("stat remote file %s: %w", u.tmp, err)
	}
	if st.Size() != size {
		_ = u.c.Remove(u.tmp)
		return startOver(fmt.Errorf("remote file %s has %d bytes, %d were sent", u.tmp, st.Size(), size))
	}
	return nil
}

func (u *sftpUpload) Abort() error {
	if u.f != nil {
		_ = u.f.Close()
	}
	if err := u.c.Remove(u.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Close closes the file without removing it: an interrupted upload keeps its prefix for the next attempt.
func (u *sftpUpload) Close() error {
	if u.f == nil {
		return nil
	}
	return u.f.Close()
}

// createTemp creates the temporary file an upload writes. A temporary file a failed attempt or a killed keeplog
// left is removed first: O_EXCL then makes sure the file is a new one, created with mode 0600 (see
// createModeWriter), not an old one of another mode.
func createTemp(c *sftp.Client, tmp string) (*sftp.File, error) {
	if _, err := c.Lstat(tmp); err == nil { // one round trip when there is none (Remove takes three)
		if err := c.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove the remote file %s of an earlier attempt: %w", tmp, err)
		}
	}
	w, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return nil, serverError(c, path.Dir(tmp), 0, fmt.Errorf("create remote file %s: %w", tmp, err))
	}
	return w, nil
}

// putSmall writes a small file through a temporary name and renames it.
func putSmall(c *sftp.Client, final, tmp string, data []byte) error {
	if err := checkSpace(c, path.Dir(tmp), int64(len(data))); err != nil {
		return err
	}
	w, err := createTemp(c, tmp)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		_ = w.Close()
		_ = c.Remove(tmp)
		return fmt.Errorf("write remote file %s: %w", tmp, err)
	}
	if err := w.Close(); err != nil {
		_ = c.Remove(tmp)
		return fmt.Errorf("close remote file %s: %w", tmp, err)
	}
	if st, err := c.Stat(tmp); err != nil || st.Size() != int64(len(data)) {
		if err == nil {
			err = fmt.Errorf("has %d bytes, %d were sent", st.Size(), len(data))
		}
		return fmt.Errorf("verify remote file %s: %w", tmp, err)
	}
	return renameOver(c, tmp, final)
}

// renameOver renames, replacing an existing target: atomically with the
// posix-rename@openssh.com extension, else remove + rename.
func renameOver(c *sftp.Client, from, to string) error {
	if _, ok := c.HasExtension("posix-rename@openssh.com"); ok {
		if err := c.PosixRename(from, to); err != nil {
			return fmt.Errorf("rename remote %s to %s: %w", from, to, err)
		}
		return nil
	}
	if err := c.Rename(from, to); err == nil {
		return nil
	}
	_ = c.Remove(to)
	if err := c.Rename(from, to); err != nil {
		return fmt.Errorf("rename remote %s to %s: %w", from, to, err)
	}
	return nil
}
