//go:build soak

package soak

import (
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/keeplog/keeplog/test/binary"
)

// tempWatch polls the one data upload temporary on the server's disk (as pkg/archiver's
// TestSIGKILLResumesFromTheAcknowledgedPrefix does): where the current run started writing is the smallest size
// it showed since the run began, or 0 when a new file (another inode) appeared.
type tempWatch struct {
	ino   uint64
	start int64
}

// next sets up the following run after a kill: a keeplog that resumes continues from the journal's acknowledged
// prefix, so that run starts at most there, and at most at the temporary's size now. Taking the smaller of what
// the journal says and what the server shows never counts fewer bytes than were sent; polls during the run can
// only lower it further.
func (w *tempWatch) next(size, journalled int64) { w.start = min(size, journalled) }

// poll observes the temporary once; it reports whether it reached size at (or the upload ended).
func (w *tempWatch) poll(dataDir string, at int64) bool {
	size, ino := tempStat(dataDir)
	switch {
	case size < 0:
		return false
	case ino != w.ino:
		w.ino, w.start = ino, 0
	case size < w.start:
		w.start = size
	}
	return size >= at
}

// settled waits until the temporary stops growing after a kill (the killed client's last writes may still be in
// sshd's buffers) and returns its size, the new start of the next run before it truncates anything.
func (w *tempWatch) settled(dataDir string) int64 {
	last, _ := tempStat(dataDir)
	for stable := 0; stable < 5; {
		time.Sleep(60 * time.Millisecond)
		if n, _ := tempStat(dataDir); n == last {
			stable++
		} else {
			last, stable = n, 0
		}
	}
	return last
}

// tempStat is the size and inode of the data temporary under dataDir that was written last (-1 when there is
// none): a keeplog that starts over under a new name (one without resume) may leave the old one behind, and the
// upload under way is the one that grows.
func tempStat(dataDir string) (int64, uint64) {
	size, ino := int64(-1), uint64(0)
	var newest time.Time
	_ = filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(d.Name(), binary.TempMarker) ||
			strings.Contains(d.Name(), binary.ManifestSuffix) {
			return nil
		}
		if fi, err := d.Info(); err == nil && !fi.ModTime().Before(newest) {
			size, ino, newest = fi.Size(), fi.Sys().(*syscall.Stat_t).Ino, fi.ModTime()
		}
		return nil
	})
	return size, ino
}
