package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/pkg/api"
)

// Check answers whether the root and the volume records' directory can be read (one directory entry), for health
// probes: kubelet's liveness probe and the CSI Probe ask every few seconds, and reading every volume's record for
// each (ListVolumes) was 10,000 JSON files and about 8 MB of garbage per probe on a node that keeps 10,000
// directories. A record that cannot be parsed is the business of the call that reads it, not a reason to restart
// the plugin.
func (s *Store) Check() error {
	if _, err := os.Stat(s.root); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(s.state, api.VolumesDir), os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("volume records: %w", err)
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("volume records: %w", err)
	}
	return nil
}
