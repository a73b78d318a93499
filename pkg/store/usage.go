package store

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/safefs"
)

// Usage is what a volume's directories hold.
type Usage struct {
	Bytes  int64 // allocated bytes, as du counts them (st_blocks * 512)
	Inodes int64 // files, directories and links, the pod directories included
}

// VolumeUsage walks every pod directory of the volume with safefs.Walk: no symlink followed, nothing but
// directories opened, no mount entered (what is mounted inside is not the volume's).
func (s *Store) VolumeUsage(volumeID string) (Usage, error) {
	dirs, err := s.PodDirs(volumeID)
	if err != nil {
		return Usage{}, err
	}
	root, err := safefs.OpenDir(s.root)
	if err != nil {
		return Usage{}, err
	}
	defer root.Close()
	var u Usage
	for _, d := range dirs {
		if _, err := s.PodDirPath(d.Dir); err != nil {
			return u, err
		}
		if err := podDirUsage(root, d.Dir, &u); err != nil {
			return u, err
		}
	}
	return u, nil
}

// podDirUsage adds one pod directory (itself included) to u; a directory that is gone adds nothing.
func podDirUsage(root *os.File, name string, u *Usage) error {
	pd, err := safefs.OpenDirAt(root, name, false)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, safefs.ErrNotRegular) {
		return nil // deleted meanwhile, or not a real directory (never followed)
	}
	if err != nil {
		return fmt.Errorf("measure %s: %w", name, err)
	}
	defer pd.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(pd.Fd()), &st); err != nil {
		return fmt.Errorf("measure %s: %w", pd.Name(), err)
	}
	u.Inodes++
	u.Bytes += st.Blocks * 512
	if _, err := safefs.Walk(pd, "", func(e safefs.Entry) bool {
		u.Inodes++
		u.Bytes += e.Stat.Blocks * 512
		return true
	}); err != nil {
		return fmt.Errorf("measure %s: %w", pd.Name(), err)
	}
	return nil
}
