package archiver

import (
	"errors"
	"fmt"
	"time"
)

// The journal's item transitions. Each sets every field its state implies and journals the item, so that no caller
// leaves a done item with an error or an upload prefix, or a queued item without its time:
//
//	Queue: finished file → queued (or skipped/failed, as decided at finish), with its remote name chosen
//	Start: queued → uploading, one attempt more (uploading → uploading: an interrupted upload resumed after a restart)
//	Progress: uploading, the server acknowledged a longer prefix
//	Done: uploading → done (verified), the stored size and digest recorded, no prefix, no error
//	SameContent: queued or uploading → done without an upload: the server has the same content as item c
//	Fail: queued or uploading → failed for good, no prefix
//	Retry: queued or uploading → queued again after a failed attempt (at least one attempt counted), with the error
//	Deleted: a done item's local file deleted (or the deletion given up), with its error if any
//
// Each checks the state the journal holds for the item (not the caller's copy, which may be stale) and refuses
// what the list does not allow, leaving the item as it is: a terminal item (done, failed, skipped) never changes
// state again and is never queued again, and a file is queued once (a new file under the same name is a new item).

// stateNew is the from-state of an item the journal does not hold.
const stateNew ItemState = "(not journalled)"

// errIllegalTransition marks a change the state machine does not allow; the error names the item and both states.
var errIllegalTransition = errors.New("not a transition of the archive journal's state machine")

// op is one of the journal's item transitions.
type op string

const (
	opQueue       op = "queue"
	opStart       op = "start"
	opProgress    op = "progress"
	opDone        op = "done"
	opSameContent op = "same content"
	opFail        op = "fail"
	opRetry       op = "retry"
	opDeleted     op = "deleted"
)

// allows says whether the transition takes an item from one state to the other: the list above.
func (o op) allows(from, to ItemState) bool {
	active := from == StateQueued || from == StateUploading
	switch o {
	case opQueue:
		return from == stateNew && (to == StateQueued || to == StateSkipped || to == StateFailed)
	case opStart:
		return active && to == StateUploading
	case opProgress:
		return from == StateUploading && to == StateUploading
	case opDone:
		return from == StateUploading && to == StateDone
	case opSameContent:
		return active && to == StateDone
	case opFail:
		return active && to == StateFailed
	case opRetry:
		return active && to == StateQueued
	case opDeleted:
		return from == StateDone && to == StateDone
	}
	return false
}

// apply journals next, the item it after the transition o, if the journal's state of the item allows it; it is
// returned unchanged (and nothing is written) when it does not.
func (j *Journal) apply(o op, it, next Item, remoteBase string) (Item, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	from := stateNew
	if cur, ok := j.items[it.ID]; ok {
		from = cur.State
	}
	if !o.allows(from, next.State) {
		return it, fmt.Errorf("journal %s (%s/%s): %s from %s to %s: %w", it.ID, it.PodDir, it.Rel, o, from, next.State,
			errIllegalTransition)
	}
	return j.putLocked(next, remoteBase)
}

// Queue journals a newly finished file; remoteBase is the archive path its remote name is chosen from ("" when
// it is not uploaded).
func (j *Journal) Queue(it Item, remoteBase string) (Item, error) {
	return j.apply(opQueue, it, it, remoteBase)
}

// Start records the start of an upload attempt.
func (j *Journal) Start(it Item, now time.Time) (Item, error) {
	next := it
	next.State = StateUploading
	next.Attempts++
	next.UpdatedAt = now
	return j.apply(opStart, it, next, "")
}

// Progress records what the server acknowledged of the upload under way.
func (j *Journal) Progress(it Item, p *Progress) (Item, error) {
	next := it
	next.State, next.Progress = StateUploading, p // the state it must be in
	return j.apply(opProgress, it, next, "")
}

// Done records a verified upload: the file's digest and what is stored.
func (j *Journal) Done(it Item, res uploaded, now time.Time) (Item, error) {
	next := it
	next.State, next.SHA256, next.Error, next.UpdatedAt = StateDone, res.sha256, "", now
	next.StoredSize, next.StoredSHA256, next.Progress = res.stored, res.storedSHA256, nil
	return j.apply(opDone, it, next, "")
}

// SameContent records an item done without an upload: archived item c has the same content (digest sum).
func (j *Journal) SameContent(it, c Item, sum string, now time.Time) (Item, error) {
	orig := c.ID
	if c.SameAs != "" {
		orig = c.SameAs
	}
	next := it
	next.State, next.SHA256, next.Remote, next.SameAs = StateDone, sum, c.Remote, orig
	next.Compression, next.StoredSize, next.StoredSHA256, next.Progress, next.Error = c.Compression, c.StoredSize, c.StoredSHA256, nil, ""
	next.UpdatedAt = now
	return j.apply(opSameContent, it, next, "")
}

// Fail records that an item cannot be archived.
func (j *Journal) Fail(it Item, err error, now time.Time) (Item, error) {
	next := it
	next.State, next.Error, next.UpdatedAt, next.Progress = StateFailed, err.Error(), now, nil
	return j.apply(opFail, it, next, "")
}

// Retry records a failed attempt; the item is queued again.
func (j *Journal) Retry(it Item, err error, now time.Time) (Item, error) {
	next := it
	if next.Attempts == 0 {
		next.Attempts = 1
	}
	next.State, next.Error, next.UpdatedAt = StateQueued, err.Error(), now
	return j.apply(opRetry, it, next, "")
}

// Deleted records what became of a done item's local file: deleted (or given up, deleted set too) or kept for a
// later try (deleted false, the reason in errMsg).
func (j *Journal) Deleted(it Item, deleted bool, errMsg string, now time.Time) (Item, error) {
	next := it
	next.State, next.Deleted, next.Error, next.UpdatedAt = StateDone, deleted, errMsg, now // the state it must be in
	return j.apply(opDeleted, it, next, "")
}

// journalFailed logs a transition's error and says whether there was one: a refused transition (the item is no
// longer in a state it applies to: another goroutine moved it on, or the pod directory's items were pruned) at
// V(2), with the item; a journal that cannot be written as an error.
func (a *Archiver) journalFailed(err error, msg string, it Item) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, errIllegalTransition):
		a.log.V(2).Info(msg+": refused", "podDir", it.PodDir, "file", it.Rel, "item", it.ID, "err", err.Error())
	default:
		a.log.Error(err, msg, "podDir", it.PodDir, "file", it.Rel)
	}
	return true
}
