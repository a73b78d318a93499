package archiver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/keeplog/keeplog/pkg/api"
)

// walkedDir holds the journal's walked marks: an empty file named after each retained pod directory whose last
// walk found nothing for the archiver to do (no file settling, no item unfinished, nothing it could not walk, and
// unpublished for more than RecentlyUnpublished). A restarted keeplog does not walk those at its first rescan: each
// is walked at its own point of the next RetainedRescanInterval, as if keeplog had not restarted. Walking every
// retained directory at the start was half the start's CPU on a node keeping 20,000 of them, for a result the
// journal already had.
//
// A mark only ever saves a walk: a pod directory without one is walked at the first rescan, as before, so a mark
// lost (a crash before the directory entry reached the disk) costs a walk and nothing else; and "Archived" never
// reads marks (it is the journal's items and a fresh walk). A mark is dropped as soon as the directory is published
// again, a walk finds work in it, or it is gone.
const walkedDir = api.ArchiveWalkedDir

// loadWalked reads the walked marks (OpenJournal): one listing, no file read.
func (j *Journal) loadWalked() error {
	d := filepath.Join(j.dir, walkedDir)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return fmt.Errorf("create journal directory %s: %w", d, err)
	}
	ents, err := os.ReadDir(d)
	if err != nil {
		return fmt.Errorf("read journal directory %s: %w", d, err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			j.walked[e.Name()] = struct{}{}
		}
	}
	return nil
}

// Walked says whether a pod directory's last walk as a retained one found nothing to do.
func (j *Journal) Walked(pod string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	_, ok := j.walked[pod]
	return ok
}

// SetWalked marks a pod directory (its name) walked (on) or drops its mark; it touches the disk only when that
// changes.
func (j *Journal) SetWalked(pod string, on bool) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.walked[pod]; ok == on {
		return nil
	}
	if on {
		return j.markWalkedLocked(pod)
	}
	return j.unmarkWalkedLocked(pod)
}

// markWalkedLocked creates a pod directory's mark. Not fsynced: a mark lost costs one walk.
func (j *Journal) markWalkedLocked(pod string) error {
	p, err := j.walkedPath(pod)
	if err != nil {
		return err
	}
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		return fmt.Errorf("journal walked mark: %w", err)
	}
	j.walked[pod] = struct{}{}
	return nil
}

// unmarkWalkedLocked removes a pod directory's mark.
func (j *Journal) unmarkWalkedLocked(pod string) error {
	p, err := j.walkedPath(pod)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("journal walked mark: %w", err)
	}
	delete(j.walked, pod)
	return nil
}

// walkedPath is a mark's path. The name is a discovered pod directory's, one the driver gave (MarkPublished) or
// one listed in walkedDir; the check is only that it names a file there.
func (j *Journal) walkedPath(pod string) (string, error) {
	if pod == "" || pod == "." || pod == ".." || strings.ContainsRune(pod, '/') {
		return "", fmt.Errorf("journal walked mark: %q is not a pod directory name", pod)
	}
	return filepath.Join(j.dir, walkedDir, pod), nil
}

// KeepWalked drops the marks of pod directories not in present (the root's listing at a rescan): they are gone.
func (j *Journal) KeepWalked(present map[string]bool) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	var errs []error
	for pod := range j.walked {
		if !present[pod] {
			errs = append(errs, j.unmarkWalkedLocked(pod))
		}
	}
	return errors.Join(errs...)
}
