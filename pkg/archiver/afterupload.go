package archiver

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/keeplog/keeplog/pkg/api"
)

// afterDone deletes the local file of a done item (deleteAfterUpload) and updates the status.
func (a *Archiver) afterDone(it Item) {
	if it.DeleteAfterUpload {
		a.deleteLocal(it)
	}
	a.markDirty(it.podDir())
}

// deleteLocal removes an archived file (deleteAfterUpload) if it is still
// the same file, and records that. A deletion refused for permission (EPERM:
// the volume is blocked over its limit with the immutable attribute) is tried
// again each time a scan sees the file, with one Event; any other failure
// (the file was replaced meanwhile) gives up.
func (a *Archiver) deleteLocal(it Item) {
	err := a.fs.remove(it.PodDir, it.Rel, it.Ino)
	ref, _ := it.podRef()
	deleted, errMsg := it.Deleted, it.Error
	switch {
	case err == nil || errors.Is(err, fs.ErrNotExist):
		deleted, errMsg = true, ""
	case errors.Is(err, fs.ErrPermission):
		first := it.Error == ""
		errMsg = "delete after upload: " + err.Error()
		a.log.Info("Cannot delete archived file yet; retried at the next scan", "podDir", it.PodDir, "file", it.Rel, "err", err.Error())
		if first {
			a.rec.PodEvent(ref, "Warning", api.ReasonArchiveFailed, fmt.Sprintf("%s was archived but cannot be deleted yet (retried at each scan): %v", it.Rel, err))
		}
	default:
		a.log.Info("Cannot delete archived file", "podDir", it.PodDir, "file", it.Rel, "err", err.Error())
		a.rec.PodEvent(ref, "Warning", api.ReasonArchiveFailed, fmt.Sprintf("%s was archived but cannot be deleted: %v", it.Rel, err))
		deleted = true
	}
	if _, err := a.journal.Deleted(it, deleted, errMsg, a.clk.Now()); err != nil {
		a.journalFailed(err, "Cannot record deletion", it)
	}
	a.markDirty(it.podDir())
}
