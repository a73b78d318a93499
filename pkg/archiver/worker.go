package archiver

import (
	"context"
	"errors"
	"fmt"

	"github.com/keeplog/keeplog/pkg/api"
)

// worker uploads queued items one at a time until ctx ends.
func (a *Archiver) worker(ctx context.Context) {
	var conn Remote
	defer func() {
		if conn != nil {
			_ = conn.Close()
		}
	}()
	for {
		id, ok := a.queue.next(ctx)
		if !ok {
			return
		}
		it, ok := a.journal.Get(id)
		if !ok || it.State.terminal() {
			continue
		}
		conn = a.process(ctx, conn, it)
		if conn != nil && !a.queue.hasDue() {
			_ = conn.Close() // do not keep idle connections open
			conn = nil
		}
	}
}

// process makes one attempt at an item and records the outcome. It returns
// the connection to reuse (nil after a failure).
func (a *Archiver) process(ctx context.Context, conn Remote, it Item) Remote {
	ref, _ := it.podRef()
	// Before a slot is taken: the same content may be archived already.
	switch res, err := a.sameContent(ctx, &it); {
	case errors.Is(err, errIllegalTransition):
		a.journalFailed(err, "Cannot record a file with the same content as an archived one", it)
		return conn
	case err != nil:
		a.log.Error(err, "Cannot record a file with the same content as an archived one; will try again")
		a.queue.add(it.ID, a.clk.Now().Add(a.cfg.MinBackoff))
		return conn
	case res == waitForTwin:
		a.queue.add(it.ID, a.clk.Now().Add(a.cfg.MinBackoff))
		return conn
	case res == alreadyStored:
		a.afterDone(it)
		return conn
	}
	held, release, err := a.sem.Acquire(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.retry(it, fmt.Errorf("acquire upload slot: %w", err))
		}
		return conn
	}
	defer release()

	if it, err = a.journal.Start(it, a.clk.Now()); a.journalFailed(err, "Cannot record upload start", it) {
		if !errors.Is(err, errIllegalTransition) { // refused: the item is not queued any more
			a.queue.add(it.ID, a.clk.Now().Add(a.cfg.MinBackoff))
		}
		return conn
	}
	a.markDirty(it.podDir())

	if conn == nil {
		if conn, err = a.dialer.Dial(held); err != nil {
			release()
			if ctx.Err() == nil {
				a.retry(it, err)
			}
			return nil
		}
	}
	start := a.clk.Now()
	res, err := a.upload(held, conn, &it)
	release()
	now := a.clk.Now()
	sum := res.sha256
	switch {
	case err == nil:
		var perr error
		if it, perr = a.journal.Done(it, res, now); a.journalFailed(perr, "Cannot record finished upload", it) {
			// The upload is verified; without a record it is redone and
			// recognised by its manifest at the next attempt.
			if !errors.Is(perr, errIllegalTransition) {
				a.queue.add(it.ID, now.Add(a.cfg.MinBackoff))
			}
			return conn
		}
		a.m.uploads.WithLabelValues(ResultSuccess).Inc()
		a.m.duration.Observe(now.Sub(start).Seconds())
		a.log.Info("Archived", "pod", ref.String(), "file", it.Rel, "remote", it.Remote, "bytes", it.Size, "sha256", sum,
			"storedBytes", res.stored, "seconds", now.Sub(start).Seconds())
		a.rec.PodEvent(ref, "Normal", api.ReasonArchived, archivedMessage(it))
		a.afterDone(it)
		return conn
	case ctx.Err() != nil:
		// Shutting down: stays "uploading" and resumes at the next start from the journalled prefix.
		_ = conn.Close()
		return nil
	case isPermanent(err):
		var perr error
		if it, perr = a.journal.Fail(it, err, now); a.journalFailed(perr, "Cannot record failed upload", it) &&
			errors.Is(perr, errIllegalTransition) {
			return conn
		}
		a.m.uploads.WithLabelValues(ResultFailed).Inc()
		a.log.Info("Cannot archive file; giving up", "pod", ref.String(), "file", it.Rel, "err", err.Error())
		a.rec.PodEvent(ref, "Warning", api.ReasonArchiveFailed, fmt.Sprintf("%s cannot be archived: %v", it.Rel, err))
		a.markDirty(it.podDir())
		return conn
	default:
		_ = conn.Close()
		a.retry(it, err)
		return nil
	}
}

// archivedMessage is the Archived Event's text.
func archivedMessage(it Item) string {
	if it.Compression != "" {
		return fmt.Sprintf("%s archived to %s (%d bytes, sha256 %s; stored %s: %d bytes)", it.Rel, it.Remote, it.Size, it.SHA256,
			it.Compression, it.StoredSize)
	}
	return fmt.Sprintf("%s archived to %s (%d bytes, sha256 %s)", it.Rel, it.Remote, it.Size, it.SHA256)
}

// retry records a failed attempt and schedules the next one. The ArchiveRetrying Event goes out at the first
// failure, when the error changes, and again every retryEventInterval while the same error persists.
func (a *Archiver) retry(it Item, err error) {
	ref, _ := it.podRef()
	now := a.clk.Now()
	it, perr := a.journal.Retry(it, err, now)
	delay := backoff(it.Attempts, a.cfg.MinBackoff, a.cfg.MaxBackoff, nil)
	if a.journalFailed(perr, "Cannot record upload retry", it) && errors.Is(perr, errIllegalTransition) {
		return // not queued or uploading any more: nothing to retry
	}
	a.m.uploads.WithLabelValues(ResultRetry).Inc()
	a.log.Info("Upload failed; will retry", "pod", ref.String(), "file", it.Rel, "attempt", it.Attempts, "retryIn", delay, "err", err.Error())
	if a.retryEv.due(it.ID, err) {
		a.rec.PodEvent(ref, "Warning", api.ReasonArchiveRetrying, retryingMessage(it, err))
	}
	a.queue.add(it.ID, now.Add(delay))
	a.markDirty(it.podDir())
}
