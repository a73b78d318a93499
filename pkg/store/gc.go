package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keeplog/keeplog/pkg/api"
)

// trashDirName is where a pod directory is moved (renamed, atomically) before it is deleted, so the store lock is
// held only for the rename and the record removal, never for a long recursive delete. It lives in the state
// directory: root-only, and on the root's filesystem, so the rename never copies.
const trashDirName = "trash"

// DeleteCheck says what the garbage collector saw when it decided to delete a pod directory; DeletePodDir refuses
// (ErrConflict) when the records no longer match it.
type DeleteCheck struct {
	// Volume is the volume that owned the directory, "" for a directory no volume owned.
	Volume string
	// LastPublished is the directory's LastPublished as seen (owned directories only): a publish since then refuses.
	LastPublished time.Time
}

// DeletePodDir deletes one pod directory, its kubelet-layout entry <root>/.pods/<dir> (api.PodLogsDir) and its
// record, the garbage collector's delete. Under the store lock it
// checks that the directory still belongs to check.Volume (or to no volume), is not published (ErrInUse), was not
// published again since the decision (ErrConflict) and has nothing mounted at or below it (ErrHoldsMount, naming the
// mount points: the directory and its record are kept, and the next call after the unmount deletes it); then it moves the directory into the trash and removes its
// record. The trash is emptied without the lock, without following any symlink and without entering another mount
// (a mount that appeared after the check stops the removal with ErrHoldsMount; EmptyTrash retries). A directory that is already gone
// still has its record removed. The returned path is the directory's former path.
func (s *Store) DeletePodDir(dir string, check DeleteCheck) (string, error) {
	path, err := s.PodDirPath(dir)
	if err != nil {
		return "", err
	}
	trashed, err := s.trashPodDir(dir, path, check)
	if err != nil && len(trashed) == 0 {
		return path, err
	}
	errs := []error{err}
	for _, t := range trashed {
		if rerr := removeTree(filepath.Dir(t), t); rerr != nil {
			errs = append(errs, fmt.Errorf("pod directory %s moved to the trash, but: %w", dir, rerr))
		}
	}
	return path, errors.Join(errs...)
}

// trashPodDir checks the records and moves the pod directory and its .pods entry into the trash; it returns what it
// moved (also with an error after a move).
func (s *Store) trashPodDir(dir, path string, check DeleteCheck) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rec string
	if check.Volume == "" {
		owner, err := s.ownerLocked(dir)
		if err != nil {
			return nil, err
		}
		if owner != "" {
			return nil, fmt.Errorf("pod directory %s: volume %s owns it now: %w", dir, owner, ErrConflict)
		}
	} else {
		vdir, err := s.volumeDir(check.Volume)
		if err != nil {
			return nil, err
		}
		rec = filepath.Join(vdir, api.PodRecordsDir, dir+".json")
		var p PodDir
		if err := readJSON(rec, &p); err != nil {
			return nil, fmt.Errorf("pod directory %s of volume %s: %w", dir, check.Volume, err)
		}
		if !p.LastPublished.Equal(check.LastPublished) {
			return nil, fmt.Errorf("pod directory %s was published again at %s: %w", dir, p.LastPublished.Format(time.RFC3339), ErrConflict)
		}
		targets, err := s.Targets(check.Volume)
		if err != nil {
			return nil, err
		}
		for _, t := range targets {
			if t.PodDir == dir {
				return nil, fmt.Errorf("pod directory %s is published at %s: %w", dir, t.Path, ErrInUse)
			}
		}
	}
	if err := checkNoMounts(s.root, dir); err != nil {
		return nil, fmt.Errorf("pod directory %s: %w", dir, err)
	}
	var trashed []string
	logs, err := s.moveLogsToTrash(dir)
	if logs != "" {
		trashed = append(trashed, logs)
	}
	if err != nil {
		return trashed, err
	}
	moved, err := s.moveToTrash(dir, path)
	if moved != "" {
		trashed = append(trashed, moved)
	}
	if err != nil {
		return trashed, err
	}
	if rec != "" {
		if err := os.Remove(rec); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return trashed, fmt.Errorf("remove record of pod directory %s: %w", dir, err)
		}
		if s.owners != nil && s.owners[dir] == check.Volume {
			delete(s.owners, dir)
		}
		s.changed(check.Volume)
		if err := SyncDir(filepath.Dir(rec)); err != nil {
			return trashed, err
		}
	}
	return trashed, nil
}

// moveToTrash renames a pod directory (checked to be a real directory, not a symlink) into the trash; "" when it
// does not exist.
func (s *Store) moveToTrash(dir, path string) (string, error) {
	return s.moveToTrashAs(path, dir)
}

// moveToTrashAs renames path (a real directory below the root) into the trash as <name>~<unix-nanos>; "" when path
// does not exist.
func (s *Store) moveToTrashAs(path, name string) (string, error) {
	if err := checkRealDir(path); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("refusing to delete pod directory: %w", err)
	}
	trash := filepath.Join(s.state, trashDirName)
	if err := os.MkdirAll(trash, 0o700); err != nil {
		return "", fmt.Errorf("create trash %s: %w", trash, err)
	}
	if err := checkRealDir(trash); err != nil {
		return "", err
	}
	trashed, err := childPath(trash, name+"~"+strconv.FormatInt(s.clk.Now().UnixNano(), 10))
	if err != nil {
		return "", err
	}
	if err := os.Rename(path, trashed); err != nil {
		return "", fmt.Errorf("move %s to the trash: %w", path, err)
	}
	if err := SyncDir(filepath.Dir(path)); err != nil {
		return trashed, err
	}
	return trashed, nil
}

// EmptyTrash deletes what an interrupted DeletePodDir left in the trash. Nothing in it is published or owned.
func (s *Store) EmptyTrash() error {
	trash := filepath.Join(s.state, trashDirName)
	entries, err := os.ReadDir(trash)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list trash %s: %w", trash, err)
	}
	var errs []error
	for _, e := range entries {
		p, err := childPath(trash, e.Name())
		if err != nil {
			continue
		}
		errs = append(errs, removeTree(trash, p))
	}
	return errors.Join(errs...)
}

// DirEntry is one entry directly below the root that may be a pod directory.
type DirEntry struct {
	Name string
	// Real is false for anything that is not a real directory (a symlink, a file); those are never deleted.
	Real bool
}

// ListPodDirs lists the entries of the root that are named like pod directories (<namespace>_<pod>_<uid>) or
// volume fallback directories (_volume_<id>), whether a volume owns them or not. Other entries (the state
// directory, lost+found, anything an admin put there) are not listed, so the garbage collector never sees them.
func (s *Store) ListPodDirs() ([]DirEntry, error) {
	entries, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("list root %s: %w", s.root, err)
	}
	out := make([]DirEntry, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if !IsPodDirName(name) {
			continue
		}
		// The type comes from the directory listing (lstat only where the filesystem does not say): no stat
		// per entry, which matters with ten thousand of them.
		out = append(out, DirEntry{Name: name, Real: e.Type().IsDir()})
	}
	return out, nil
}

// PodDirModTime is the modification time of a pod directory (not following a symlink).
func (s *Store) PodDirModTime(dir string) (time.Time, error) {
	path, err := s.PodDirPath(dir)
	if err != nil {
		return time.Time{}, err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

// IsPodDirName is true for names keeplog gives pod directories: <namespace>_<pod>_<uid> or _volume_<id>.
func IsPodDirName(name string) bool {
	if rest, ok := strings.CutPrefix(name, api.FallbackDirPrefix); ok {
		return ValidateKey(strings.ReplaceAll(rest, "_", ":")) == nil
	}
	_, err := ParsePodDirName(name)
	return err == nil
}
