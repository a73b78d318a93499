package store

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
)

// Usage is what a volume's directories hold.
type Usage struct {
	Bytes  int64 // allocated bytes, as du counts them (st_blocks * 512)
	Inodes int64 // files, directories and links, the pod directories included
}

// VolumeUsage walks every pod directory of the volume without following symlinks.
func (s *Store) VolumeUsage(volumeID string) (Usage, error) {
	dirs, err := s.PodDirs(volumeID)
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	for _, d := range dirs {
		path, err := s.PodDirPath(d.Dir)
		if err != nil {
			return u, err
		}
		err = filepath.WalkDir(path, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // deleted while we walk
				}
				return err
			}
			fi, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			u.Inodes++
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				u.Bytes += st.Blocks * 512
			}
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return u, fmt.Errorf("measure %s: %w", path, err)
		}
	}
	return u, nil
}
