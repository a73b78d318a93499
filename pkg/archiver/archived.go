package archiver

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/safefs"
)

// Archived reports whether a pod directory (path or base name) is archived: every regular file under it that
// matches its patterns, at any depth, is journalled done or skipped. The answer comes from the durable journal and
// a fresh walk of the directory, never from the archiver's queues or what its watches have seen so far, so a dump
// the archiver has not discovered yet (an event not handled, lost in an overflow) is not archived. A directory
// that is gone has nothing left to archive; one that cannot be walked whole (a mount inside it, an unreadable
// sub-directory) is not archived. When it is not, the reason names the first file or directory in the way.
// Safe to call from any goroutine: the garbage collector and the dump manager ask it.
func (a *Archiver) Archived(podDir string) (bool, string) {
	pod := filepath.Base(podDir)
	pol := a.policy(pod)
	if pol.Off {
		return true, ""
	}
	var why string
	res, err := a.fs.walk(pod, func(e entry) {
		if why != "" || e.kind != unix.S_IFREG || inOwnDir(e.rel) || !pol.Matches(e.rel) {
			return
		}
		it, ok := a.journal.Get(itemID(pod, e.rel, e.st.Ino, e.st.Size, e.st.Mtim.Nano()))
		switch {
		case !ok:
			why = e.rel + " is not archived yet"
			a.requestScan(pod) // an unpublished directory is not watched: walk it now (retained.go)
		case it.State == StateDone || it.State == StateSkipped:
		case it.Error != "":
			why = fmt.Sprintf("%s is %s: %s", e.rel, it.State, it.Error)
		default:
			why = fmt.Sprintf("%s is %s", e.rel, it.State)
		}
	})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return true, ""
	case err != nil:
		return false, "cannot look at the directory: " + err.Error()
	case len(res.Mounts) > 0:
		return false, res.Mounts[0] + " is a mount point: keeplog never enters or deletes another mount"
	case len(res.TooDeep) > 0:
		return false, fmt.Sprintf("%s is deeper than %d levels: not walked", res.TooDeep[0], safefs.MaxWalkDepth)
	}
	return why == "", why
}

// Pending is !Archived: the garbage collector keeps what is pending, the dump manager waits for it.
func (a *Archiver) Pending(podDir string) bool {
	ok, _ := a.Archived(podDir)
	return !ok
}
