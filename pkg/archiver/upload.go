package archiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/pkg/api"
)

// Manifest is the JSON file written beside every archived file
// ("<file>.manifest.json"). It is renamed into place before the file itself,
// so an archived file always has its manifest.
type Manifest struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	UID       string `json:"uid"`
	Node      string `json:"node"`
	Container string `json:"container"`
	Path      string `json:"path"` // inside the pod directory
	// Size and SHA256 are the local file's (what a restore gives back).
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Compression is how the remote file stores it: "none", or "zstd" (independent frames, one per chunk:
	// `zstd -d` restores it) with CompressionLevel.
	Compression      string `json:"compression"`
	CompressionLevel int    `json:"compressionLevel,omitempty"`
	// StoredSize and StoredSHA256 are the remote file's (equal to Size and SHA256 when not compressed).
	StoredSize   int64     `json:"storedSize"`
	StoredSHA256 string    `json:"storedSha256"`
	Mtime        time.Time `json:"mtime"`
	UploadedAt   time.Time `json:"uploadedAt"`
	Item         string    `json:"keeplogItem"` // journal item ID, for idempotent redo
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

// uploaded is what a verified upload stored.
type uploaded struct {
	sha256, storedSHA256 string
	stored               int64
}

// upload sends one item to the server, verifies it and renames it into place. An interrupted upload continues
// from it.Progress, which upload keeps current (journalled after every acknowledged chunk). Errors wrapped by
// permanent() are not retried.
func (a *Archiver) upload(ctx context.Context, rm Remote, it *Item) (uploaded, error) {
	pod, err := it.podRef()
	if err != nil {
		return uploaded{}, permanent(err)
	}
	f, st, err := a.fs.open(it.PodDir, it.Rel)
	if err != nil {
		return uploaded{}, localError(err)
	}
	defer f.Close()
	if st.Ino != it.Ino || st.Size != it.Size || st.Mtim.Nano() != it.MtimeNs {
		return uploaded{}, permanentf("%s changed after it was found finished (inode %d size %d mtime %d, was %d %d %d)",
			f.Name(), st.Ino, st.Size, st.Mtim.Nano(), it.Ino, it.Size, it.MtimeNs)
	}
	final := it.Remote
	tmp := tempPath(final, it.ID)

	// A previous run may have finished the rename and died before the
	// journal said so: then the file and a manifest naming this item exist.
	if m, ok := alreadyArchived(rm, final, it); ok {
		_ = rm.Remove(tmp)
		_ = rm.Remove(tempPath(manifestPath(final), it.ID))
		return uploaded{sha256: m.SHA256, storedSHA256: m.StoredSHA256, stored: m.StoredSize}, nil
	}
	dir := path.Dir(final)
	if err := rm.MkdirAll(dir); err != nil {
		return uploaded{}, err
	}
	enc, err := newEncoder(it.Compression)
	if err != nil {
		return uploaded{}, permanent(err)
	}
	up, err := a.resume(rm, it, tmp, dir, &st, enc != nil)
	if err != nil {
		return uploaded{}, err
	}
	res, err := a.sendChunks(ctx, up, f, it, enc)
	if err != nil {
		return uploaded{}, a.interrupted(ctx, up, it, fmt.Errorf("upload %s to %s: %w", f.Name(), tmp, err))
	}
	// The file must not have changed while it was read.
	var after unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &after); err != nil {
		_ = up.Close()
		return uploaded{}, fmt.Errorf("fstat %s: %w", f.Name(), err)
	}
	if after.Size != it.Size || after.Mtim.Nano() != it.MtimeNs {
		return uploaded{}, a.interrupted(ctx, up, it, permanentf("%s changed while it was uploaded", f.Name()))
	}
	if err := up.Commit(res.stored); err != nil {
		return uploaded{}, a.interrupted(ctx, up, it, err)
	}
	algo, level := describeCompression(it.Compression)
	m := Manifest{
		Namespace: pod.Namespace, Pod: pod.Name, UID: pod.UID, Node: a.cfg.NodeName,
		Container: it.Container, Path: it.Rel, Size: it.Size, SHA256: res.sha256,
		Compression: algo, CompressionLevel: level, StoredSize: res.stored, StoredSHA256: res.storedSHA256,
		Mtime: time.Unix(0, it.MtimeNs).UTC(), UploadedAt: a.clk.Now().UTC(), Item: it.ID,
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return uploaded{}, err
	}
	if err := rm.PutSmall(manifestPath(final), tempPath(manifestPath(final), it.ID), append(mb, '\n')); err != nil {
		return uploaded{}, err // the verified temporary file stays: the retry resumes at its end
	}
	if err := rm.Rename(tmp, final); err != nil {
		return uploaded{}, err
	}
	return res, nil
}

// resume opens the upload session at the journalled prefix, or from the start (said in the log and an Event)
// when the server does not hold it, and checks that the rest fits on the server.
func (a *Archiver) resume(rm Remote, it *Item, tmp, dir string, st *unix.Stat_t, compressed bool) (Upload, error) {
	up := rm.Upload(tmp)
	from, why, err := up.Resume(it.Progress.prefix())
	if err != nil {
		return nil, err
	}
	ref, _ := it.podRef()
	switch {
	case from > 0:
		a.m.resumes.WithLabelValues(ResumeContinued).Inc()
		a.log.Info("Resuming upload", "pod", ref.String(), "file", it.Rel, "acknowledgedBytes", from, "rawBytes", it.Progress.Raw)
	case it.Progress != nil && it.Progress.Stored > 0:
		a.m.resumes.WithLabelValues(ResumeRestarted).Inc()
		a.log.Info("Cannot resume upload; starting over", "pod", ref.String(), "file", it.Rel, "reason", why)
		a.rec.PodEvent(ref, "Warning", api.ReasonArchiveUploadRestarted, fmt.Sprintf("%s: upload starts over: %s", it.Rel, why))
		it.Progress = nil
	default:
		it.Progress = nil
	}
	if err := rm.CheckSpace(dir, spaceNeeded(it, st, compressed)); err != nil {
		_ = up.Close()
		return nil, err
	}
	return up, nil
}

// spaceNeeded bounds what the rest of an upload stores: the raw bytes left, or, compressed, no more than the
// allocated bytes left (holes compress to almost nothing) plus frame overhead.
func spaceNeeded(it *Item, st *unix.Stat_t, compressed bool) int64 {
	var done int64
	if it.Progress != nil {
		done = it.Progress.Raw
	}
	left := it.Size - done
	if compressed {
		left = min(left, st.Blocks*512) + left/256
	}
	return left
}

// interrupted ends a failed upload session: a permanent failure or a discarded partial file starts the next
// attempt over (the temporary file is removed); anything else (a lost connection, a shutdown) keeps the server's
// prefix for the next attempt.
func (a *Archiver) interrupted(ctx context.Context, up Upload, it *Item, err error) error {
	switch {
	case ctx.Err() != nil:
		_ = up.Close()
		return fmt.Errorf("%w (interrupted: %v)", err, context.Cause(ctx))
	case isPermanent(err) || errors.Is(err, errStartOver):
		_ = up.Abort()
		it.Progress = nil
	default:
		_ = up.Close()
	}
	return err
}

// sendChunks reads the file from it.Progress on, one chunk at a time, and sends each (compressed as an
// independent zstd frame when enc is set), journalling the acknowledged prefix after each chunk. The next chunks
// are read, compressed and hashed while the current ones are sent (prepareChunks), and up to writeDepth chunks are
// on the wire at once (chunkSender), so that the link does not idle while a chunk's last bytes are acknowledged.
func (a *Archiver) sendChunks(ctx context.Context, up Upload, f *os.File, it *Item, enc *encoder) (uploaded, error) {
	d, err := newDigests(it.Progress, enc != nil)
	if err != nil {
		it.Progress = nil
		return uploaded{}, startOver(err)
	}
	var raw, stored int64
	if it.Progress != nil {
		raw, stored = it.Progress.Raw, it.Progress.Stored
	}
	depth := writeDepth(up, a.limiter != nil)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks, done := prepareChunks(pctx, f, it, enc, d, int(min(a.cfg.ChunkSize, max(it.Size, 1))), depth+1, raw, stored)
	defer func() {
		cancel()
		for range chunks { // let the preparing goroutine end before d is read or f closed
		}
	}()
	s := newChunkSender(depth, func(off int64, out []byte) error {
		r := &throttled{ctx: ctx, limiter: a.limiter, b: out, onBytes: func(n int) { a.m.bytes.Add(float64(n)) }}
		return up.Write(off, r, int64(len(out)))
	}, func(p *Progress) {
		stored = p.Stored
		p.Token = up.Token()
		it.Progress = p // only this field: prepareChunks reads the item meanwhile
		if _, err := a.journal.Progress(*it, p); err != nil {
			a.journalFailed(err, "Cannot record upload progress; an interruption now resends more", *it)
		}
	}, done)
	next := stored // where the next write goes: acknowledged or not, the chunks before it are on their way
	w := &partWriter{min: minWrite(up)}
	for b := range chunks {
		if b.err != nil {
			if err := s.flush(); err != nil {
				return uploaded{}, err
			}
			return uploaded{}, b.err
		}
		out, p, owns := w.add(b)
		if out == nil {
			done(b)
			continue
		}
		if err := s.send(next, out, p, b, owns); err != nil {
			return uploaded{}, err
		}
		next = p.Stored
	}
	if out, p, _ := w.rest(); out != nil && ctx.Err() == nil {
		if err := s.send(next, out, p, prepared{}, false); err != nil {
			return uploaded{}, err
		}
	}
	if err := s.flush(); err != nil {
		return uploaded{}, err
	}
	if err := ctx.Err(); err != nil {
		return uploaded{}, context.Cause(ctx)
	}
	sum, storedSum := d.sums()
	return uploaded{sha256: sum, storedSHA256: storedSum, stored: stored}, nil
}

// alreadyArchived returns the manifest when final and its manifest are this item's.
func alreadyArchived(rm Remote, final string, it *Item) (Manifest, bool) {
	size, err := rm.Stat(final)
	if err != nil {
		return Manifest{}, false
	}
	b, err := rm.ReadSmall(manifestPath(final), 1<<16)
	if err != nil {
		return Manifest{}, false
	}
	var m Manifest
	if json.Unmarshal(b, &m) != nil || m.Item != it.ID || m.Size != it.Size || len(m.SHA256) != 64 {
		return Manifest{}, false
	}
	if m.StoredSize == 0 && m.StoredSHA256 == "" { // a manifest of keeplog before compression
		m.StoredSize, m.StoredSHA256 = m.Size, m.SHA256
	}
	if size != m.StoredSize {
		return Manifest{}, false
	}
	return m, true
}
