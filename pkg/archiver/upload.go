package archiver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/keeplog/keeplog/pkg/store"
)

// Manifest is the JSON file written beside every archived file
// ("<file>.manifest.json"). It is renamed into place before the file itself,
// so an archived file always has its manifest.
type Manifest struct {
	Namespace  string    `json:"namespace"`
	Pod        string    `json:"pod"`
	UID        string    `json:"uid"`
	Node       string    `json:"node"`
	Container  string    `json:"container"`
	Path       string    `json:"path"` // inside the pod directory
	Size       int64     `json:"size"`
	SHA256     string    `json:"sha256"`
	Mtime      time.Time `json:"mtime"`
	UploadedAt time.Time `json:"uploadedAt"`
	Item       string    `json:"keeplogItem"` // journal item ID, for idempotent redo
}

// uploadReader reads the local file once, sequentially: it hashes, counts,
// honours the bandwidth limit and the context, and refuses to read past the
// size the file had when it was found finished.
type uploadReader struct {
	ctx     context.Context
	f       *os.File
	limiter *rate.Limiter
	h       hash.Hash
	n       int64
	want    int64
	onBytes func(int)
}

func (r *uploadReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, context.Cause(r.ctx)
	}
	if r.limiter != nil {
		if b := r.limiter.Burst(); len(p) > b {
			p = p[:b]
		}
		if err := r.limiter.WaitN(r.ctx, len(p)); err != nil {
			if r.ctx.Err() != nil {
				return 0, context.Cause(r.ctx)
			}
			return 0, err
		}
	}
	n, err := r.f.Read(p)
	if n > 0 {
		r.h.Write(p[:n])
		r.n += int64(n)
		if r.onBytes != nil {
			r.onBytes(n)
		}
		if r.n > r.want {
			return n, permanentf("%s grew past the %d bytes it had when it was found finished", r.f.Name(), r.want)
		}
	}
	if errors.Is(err, io.EOF) && r.n < r.want {
		return n, permanentf("%s shrank to %d bytes (it had %d when it was found finished)", r.f.Name(), r.n, r.want)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return n, permanentf("read %s: %w", r.f.Name(), err)
	}
	return n, err
}

// localError classifies a failure to open a local file: all of them are
// permanent except running out of descriptors or memory.
func localError(err error) error {
	if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.EINTR) {
		return err
	}
	if errors.Is(err, fs.ErrNotExist) {
		return permanentf("vanished: %w", err)
	}
	return permanent(err)
}

// upload sends one item to the server and verifies it. It returns the
// sha256 of what was sent. Errors wrapped by permanent() are not retried.
func (a *Archiver) upload(ctx context.Context, conn *Conn, it Item) (string, error) {
	pod, err := store.ParsePodDirName(it.PodDir)
	if err != nil {
		return "", permanent(err)
	}
	f, st, err := a.fs.open(it.PodDir, it.Rel)
	if err != nil {
		return "", localError(err)
	}
	defer f.Close()
	if st.Ino != it.Ino || st.Size != it.Size || st.Mtim.Nano() != it.MtimeNs {
		return "", permanentf("%s changed after it was found finished (inode %d size %d mtime %d, was %d %d %d)",
			f.Name(), st.Ino, st.Size, st.Mtim.Nano(), it.Ino, it.Size, it.MtimeNs)
	}
	c := conn.SFTP
	final := it.Remote
	tmp := tempPath(final, it.ID)

	// A previous run may have finished the rename and died before the
	// journal said so: then the file and a manifest naming this item exist.
	if sum, ok := alreadyArchived(c, final, it); ok {
		_ = c.Remove(tmp)
		_ = c.Remove(tempPath(manifestPath(final), it.ID))
		return sum, nil
	}
	dir := path.Dir(final)
	if err := c.MkdirAll(dir); err != nil {
		return "", fmt.Errorf("create remote directory %s: %w", dir, err)
	}
	w, err := createTemp(c, tmp, it.Size)
	if err != nil {
		return "", err
	}
	r := &uploadReader{ctx: ctx, f: f, limiter: a.limiter, h: sha256.New(), want: it.Size,
		onBytes: func(n int) { a.m.bytes.Add(float64(n)) }}
	n, err := w.ReadFromWithConcurrency(r, a.cfg.ConcurrentRequests)
	if err != nil {
		_ = w.Close()
		if ctx.Err() != nil {
			return "", fmt.Errorf("upload %s to %s interrupted: %w", f.Name(), tmp, context.Cause(ctx))
		}
		// The partial file goes before the retry: on a full server it would keep the server full.
		_ = c.Remove(tmp)
		if isPermanent(err) {
			return "", err
		}
		return "", serverError(c, dir, it.Size, fmt.Errorf("upload %s to %s: %w", f.Name(), tmp, err))
	}
	if n != it.Size || r.n != it.Size {
		_ = w.Close()
		return "", permanentf("upload %s: read %d bytes, want %d", f.Name(), r.n, it.Size)
	}
	// The file must not have changed while it was read.
	var after unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &after); err != nil {
		_ = w.Close()
		return "", fmt.Errorf("fstat %s: %w", f.Name(), err)
	}
	if after.Size != it.Size || after.Mtim.Nano() != it.MtimeNs {
		_ = w.Close()
		_ = c.Remove(tmp)
		return "", permanentf("%s changed while it was uploaded", f.Name())
	}
	if err := w.Close(); err != nil {
		_ = c.Remove(tmp)
		return "", serverError(c, dir, it.Size, fmt.Errorf("close remote file %s: %w", tmp, err))
	}
	rst, err := c.Stat(tmp)
	if err != nil {
		return "", fmt.Errorf("stat remote file %s: %w", tmp, err)
	}
	if rst.Size() != r.n {
		return "", fmt.Errorf("remote file %s has %d bytes, %d were sent", tmp, rst.Size(), r.n)
	}
	sum := hex.EncodeToString(r.h.Sum(nil))

	m := Manifest{
		Namespace: pod.Namespace, Pod: pod.Name, UID: pod.UID, Node: a.cfg.NodeName,
		Container: it.Container, Path: it.Rel, Size: it.Size, SHA256: sum,
		Mtime: time.Unix(0, it.MtimeNs).UTC(), UploadedAt: a.clk.Now().UTC(), Item: it.ID,
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", err
	}
	if err := putSmall(c, manifestPath(final), tempPath(manifestPath(final), it.ID), append(mb, '\n')); err != nil {
		_ = c.Remove(tmp)
		return "", serverError(c, dir, it.Size, err)
	}
	if err := renameOver(c, tmp, final); err != nil {
		return "", err
	}
	return sum, nil
}

// alreadyArchived reports whether final and its manifest are this item's.
func alreadyArchived(c *sftp.Client, final string, it Item) (string, bool) {
	st, err := c.Stat(final)
	if err != nil || st.Size() != it.Size {
		return "", false
	}
	mf, err := c.Open(manifestPath(final))
	if err != nil {
		return "", false
	}
	defer mf.Close()
	b, err := io.ReadAll(io.LimitReader(mf, 1<<16))
	if err != nil {
		return "", false
	}
	var m Manifest
	if json.Unmarshal(b, &m) != nil || m.Item != it.ID || m.Size != it.Size || len(m.SHA256) != 64 {
		return "", false
	}
	return m.SHA256, true
}

// createTemp creates the temporary file an upload of size bytes writes, after checking that they fit on the server.
// A temporary file a failed attempt or a killed keeplog left is removed first: it would keep a full server full, and
// O_EXCL then makes sure the file is a new one, created with mode 0600 (see createModeWriter), not an old one of
// another mode.
func createTemp(c *sftp.Client, tmp string, size int64) (*sftp.File, error) {
	if _, err := c.Lstat(tmp); err == nil { // one round trip when there is none (Remove takes three)
		if err := c.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove the remote file %s of an earlier attempt: %w", tmp, err)
		}
	}
	if err := checkSpace(c, path.Dir(tmp), size); err != nil {
		return nil, err
	}
	w, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return nil, serverError(c, path.Dir(tmp), size, fmt.Errorf("create remote file %s: %w", tmp, err))
	}
	return w, nil
}

// putSmall writes a small file through a temporary name and renames it.
func putSmall(c *sftp.Client, final, tmp string, data []byte) error {
	w, err := createTemp(c, tmp, int64(len(data)))
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
