package archiver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/keeplog/keeplog/pkg/api"
)

// Same content, same upload. The journal names a file by path, inode, size and mtime, so a touch, a rename or a
// second hard link makes a new item. Before such an item takes an upload slot, the worker looks for an item of the
// same pod directory with the same inode and size that is done; only then it reads the local file once to compute
// its sha256 (a local read is cheap next to the network), and when it equals the done item's, the new item is
// journalled done pointing at the existing remote file and manifest (SameAs), and nothing is sent. A changed file
// (other bytes, same inode and size) has another sha256 and is uploaded as a new version. Only files that were
// not compared are hashed: a dump that is new by inode or size costs nothing extra.

// sameContentResult is what the worker does with an item.
type sameContentResult int

const (
	uploadIt      sameContentResult = iota // no archived file with the same content: upload
	alreadyStored                          // recorded done, pointing at the same content
	waitForTwin                            // an earlier item with the same inode is still under way: ask again later
)

// sameContent decides whether it needs an upload; on alreadyStored the item is journalled done.
func (a *Archiver) sameContent(ctx context.Context, it *Item) (sameContentResult, error) {
	var done []Item
	for _, c := range a.journal.sameInode(it.PodDir, it.ID, it.Ino, it.Size) {
		switch {
		case c.State == StateDone && c.SHA256 != "":
			done = append(done, c)
		case !c.State.terminal() && (c.QueuedAt.Before(it.QueuedAt) || (c.QueuedAt.Equal(it.QueuedAt) && c.ID < it.ID)):
			return waitForTwin, nil // a hard link found with the file, or a touch during the upload
		}
	}
	if len(done) == 0 {
		return uploadIt, nil
	}
	sum, err := a.localSHA256(ctx, it)
	if err != nil {
		return uploadIt, nil // the upload reports what is wrong with the file
	}
	for _, c := range done {
		if c.SHA256 != sum {
			continue
		}
		if *it, err = a.journal.SameContent(*it, c, sum, a.clk.Now()); err != nil {
			return uploadIt, err
		}
		ref, _ := it.podRef()
		a.m.uploads.WithLabelValues(ResultSameContent).Inc()
		a.log.Info("Same content as an archived file; not sent again", "pod", ref.String(), "file", it.Rel, "sameAs", c.Rel, "remote", c.Remote)
		a.rec.PodEvent(ref, "Normal", api.ReasonArchived, fmt.Sprintf("%s has the same content as %s (inode %d, %d bytes, sha256 %s), archived to %s: not sent again",
			it.Rel, c.Rel, it.Ino, it.Size, sum, c.Remote))
		return alreadyStored, nil
	}
	return uploadIt, nil
}

// localSHA256 reads the item's file once, if it is still the item's.
func (a *Archiver) localSHA256(ctx context.Context, it *Item) (string, error) {
	f, st, err := a.fs.open(it.PodDir, it.Rel)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if st.Ino != it.Ino || st.Size != it.Size || st.Mtim.Nano() != it.MtimeNs {
		return "", fmt.Errorf("%s changed", f.Name())
	}
	h := sha256.New()
	if _, err := io.Copy(h, &ctxReader{ctx: ctx, r: f}); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ctxReader stops a long local read when the archiver stops.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
