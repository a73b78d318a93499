package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/keeplog/keeplog/pkg/api"
)

// <root>/.pods (api.PodLogsDir) is the kubelet-layout tree of pods' stdout/stderr below the root, the one include
// path a collector adds to its /var/log/pods rules:
//
//	<root>/.pods/<namespace>_<pod>_<uid>/<container>/<restart>.log[.<YYYYMMDD-hhmmss>[.gz]]
//
// It mirrors kubelet's /var/log/pods level for level, so the path parsers collectors already run on /var/log/pods
// (OpenTelemetry's container operator, fluent-bit's and fluentd's kubernetes tag regex, Vector) read namespace, pod,
// UID and container from it unchanged. Its files are hard links (pkg/podinfo makes them), never second copies.
// It starts with '.' (a namespace never does), so it is never taken for a pod directory (ListPodDirs, the archiver's
// watch), and it is not below any pod directory, so a pod cannot see or change it.
//
// Its entries live and die with their pod directory: DeletePodDir and DeleteVolume remove <root>/.pods/<dir> with
// <root>/<dir>.

// PodLogsPath is <root>/.pods/<dir>, the kubelet-layout entry of pod directory dir (checked like PodDirPath).
func (s *Store) PodLogsPath(dir string) (string, error) {
	if _, err := s.PodDirPath(dir); err != nil {
		return "", err
	}
	return childPath(filepath.Join(s.root, api.PodLogsDir), dir)
}

// moveLogsToTrash renames <root>/.pods/<dir> into the trash (as <dir>.pods~<nanos>); "" when there is none. It runs
// before the pod directory itself is moved, so an interruption between the two never leaves an entry whose pod
// directory is gone (the pod directory, still there, is deleted by the next GC pass; its copies are in it).
func (s *Store) moveLogsToTrash(dir string) (string, error) {
	path, err := s.PodLogsPath(dir)
	if err != nil {
		return "", err
	}
	return s.moveToTrashAs(path, dir+api.PodLogsDir)
}

// removePodLogs deletes <root>/.pods/<dir> in place (DeleteVolume's synchronous delete): no symlink followed, no
// mount entered. A missing entry is not an error.
func (s *Store) removePodLogs(dir string) error {
	path, err := s.PodLogsPath(dir)
	if err != nil {
		return err
	}
	if err := checkRealDir(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("refusing to delete %s: %w", path, err)
	}
	return removeTree(filepath.Dir(path), path)
}

// ListPodLogs lists the entries of <root>/.pods named like pod directories (others are never touched).
func (s *Store) ListPodLogs() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, api.PodLogsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", filepath.Join(s.root, api.PodLogsDir), err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && IsPodDirName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// DeleteOrphanPodLogs deletes <root>/.pods/<dir> of a pod that had no keeplog volume (the stdout grace keeps those):
// refused (ErrConflict) while <root>/<dir> exists, whose deletion (DeletePodDir) takes the entry with it. Moved to the
// trash under the store lock, then removed without following a symlink or entering a mount. A missing entry is fine.
func (s *Store) DeleteOrphanPodLogs(dir string) error {
	podDir, err := s.PodDirPath(dir)
	if err != nil {
		return err
	}
	trashed, err := func() (string, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, err := os.Lstat(podDir); err == nil {
			return "", fmt.Errorf("%s/%s belongs to the pod directory %s: %w", api.PodLogsDir, dir, podDir, ErrConflict)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		return s.moveLogsToTrash(dir)
	}()
	if err != nil || trashed == "" {
		return err
	}
	return removeTree(filepath.Dir(trashed), trashed)
}
