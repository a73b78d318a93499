package archiver

import "time"

// The journal's item transitions. Each sets every field its state implies and journals the item, so that no caller
// leaves a done item with an error or an upload prefix, or a queued item without its time:
//
//	Queue: finished file → queued (or skipped/failed, as decided at finish), with its remote name chosen
//	Start: queued → uploading, one attempt more
//	Progress: uploading, the server acknowledged a longer prefix
//	Done: uploading → done (verified), the stored size and digest recorded, no prefix, no error
//	SameContent: → done without an upload: the server has the same content as item c
//	Fail: → failed for good, no prefix
//	Retry: → queued again after a failed attempt (at least one attempt counted), with the error
//	Deleted: a done item's local file deleted (or the deletion given up), with its error if any

// Queue journals a newly finished file; remoteBase is the archive path its remote name is chosen from ("" when
// it is not uploaded).
func (j *Journal) Queue(it Item, remoteBase string) (Item, error) { return j.Put(it, remoteBase) }

// Start records the start of an upload attempt.
func (j *Journal) Start(it Item, now time.Time) (Item, error) {
	it.State = StateUploading
	it.Attempts++
	it.UpdatedAt = now
	return j.Put(it, "")
}

// Progress records what the server acknowledged of the upload under way.
func (j *Journal) Progress(it Item, p *Progress) (Item, error) {
	it.Progress = p
	return j.Put(it, "")
}

// Done records a verified upload: the file's digest and what is stored.
func (j *Journal) Done(it Item, res uploaded, now time.Time) (Item, error) {
	it.State, it.SHA256, it.Error, it.UpdatedAt = StateDone, res.sha256, "", now
	it.StoredSize, it.StoredSHA256, it.Progress = res.stored, res.storedSHA256, nil
	return j.Put(it, "")
}

// SameContent records an item done without an upload: archived item c has the same content (digest sum).
func (j *Journal) SameContent(it, c Item, sum string, now time.Time) (Item, error) {
	orig := c.ID
	if c.SameAs != "" {
		orig = c.SameAs
	}
	it.State, it.SHA256, it.Remote, it.SameAs = StateDone, sum, c.Remote, orig
	it.Compression, it.StoredSize, it.StoredSHA256, it.Progress, it.Error = c.Compression, c.StoredSize, c.StoredSHA256, nil, ""
	it.UpdatedAt = now
	return j.Put(it, "")
}

// Fail records that an item cannot be archived.
func (j *Journal) Fail(it Item, err error, now time.Time) (Item, error) {
	it.State, it.Error, it.UpdatedAt, it.Progress = StateFailed, err.Error(), now, nil
	return j.Put(it, "")
}

// Retry records a failed attempt; the item is queued again.
func (j *Journal) Retry(it Item, err error, now time.Time) (Item, error) {
	if it.Attempts == 0 {
		it.Attempts = 1
	}
	it.State, it.Error, it.UpdatedAt = StateQueued, err.Error(), now
	return j.Put(it, "")
}

// Deleted records what became of a done item's local file: deleted (or given up, deleted set too) or kept for a
// later try (deleted false, the reason in errMsg).
func (j *Journal) Deleted(it Item, deleted bool, errMsg string, now time.Time) (Item, error) {
	it.Deleted, it.Error, it.UpdatedAt = deleted, errMsg, now
	return j.Put(it, "")
}
