package store

import (
	"fmt"
	"maps"
	"path/filepath"

	"github.com/keeplog/keeplog/pkg/api"
)

// Owner returns the volume that owns a pod directory and that directory's record; ErrNotFound when no volume does.
func (s *Store) Owner(dir string) (*Volume, *PodDir, error) {
	if _, err := s.PodDirPath(dir); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	id, err := s.ownerLocked(dir)
	s.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	if id == "" {
		return nil, nil, fmt.Errorf("pod directory %s: no volume owns it: %w", dir, ErrNotFound)
	}
	v, err := s.GetVolume(id)
	if err != nil {
		return nil, nil, err
	}
	p, err := s.readPodDir(id, dir)
	if err != nil {
		return nil, nil, err
	}
	return v, p, nil
}

// readPodDir reads the record of pod directory dir in volume id.
func (s *Store) readPodDir(id, dir string) (*PodDir, error) {
	vdir, err := s.volumeDir(id)
	if err != nil {
		return nil, err
	}
	var p PodDir
	if err := readJSON(filepath.Join(vdir, api.PodRecordsDir, dir+".json"), &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// PodDirRecord returns a pod directory's own record, without its volume's: the archiver asks of each directory at
// every rescan whether it is unpublished, and reading the volume record too (Owner) was a third of that. ErrNotFound
// when no volume owns the directory, or its record is gone.
func (s *Store) PodDirRecord(dir string) (*PodDir, error) {
	if _, err := s.PodDirPath(dir); err != nil {
		return nil, err
	}
	s.mu.Lock()
	err := s.loadOwnersLocked()
	id := s.owners[dir]
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if id == "" {
		return nil, fmt.Errorf("pod directory %s: no volume owns it: %w", dir, ErrNotFound)
	}
	return s.readPodDir(id, dir)
}

// SetPodAnnotations records a pod directory's keeplog annotations; it writes only when they changed.
func (s *Store) SetPodAnnotations(volumeID, dir string, ann map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	vdir, err := s.volumeDir(volumeID)
	if err != nil {
		return err
	}
	rec := filepath.Join(vdir, api.PodRecordsDir, dir+".json")
	var p PodDir
	if err := readJSON(rec, &p); err != nil {
		return err
	}
	if maps.Equal(p.Annotations, ann) || (len(p.Annotations) == 0 && len(ann) == 0) {
		return nil
	}
	p.Annotations = maps.Clone(ann)
	if err := WriteJSONAtomic(rec, &p); err != nil {
		return err
	}
	s.changed(volumeID)
	return nil
}
