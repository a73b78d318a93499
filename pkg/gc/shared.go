package gc

import (
	"errors"
	"fmt"
	"io/fs"

	"golang.org/x/sys/unix"
)

// Neighbours of keeplog's root on a node: other components that fill a disk and act when it is full. kubelet
// evicts pods when its root dir's filesystem (nodefs, which also holds /var/log/pods) passes its eviction
// thresholds and garbage-collects images on the runtime's (imagefs); keeplog's deletions can free neither
// eviction's nor image GC's way, nor can they free keeplog's: on a shared filesystem keeplog must act first.
const (
	NeighbourKubelet = "kubelet"
	NeighbourPodLogs = "pod-logs"
	NeighbourRuntime = "runtime"
)

// Neighbour is a directory of another component; an empty Path is not checked.
type Neighbour struct {
	Name, Path string
}

// Shared is, by neighbour, whether it is on the root's filesystem; a neighbour whose directory does not exist is
// absent (and listed in Missing); one that exists but cannot be stat-ed for permission is Unknown.
type Shared struct {
	With    map[string]bool
	Missing []string
	Unknown []string
}

// Any reports whether the root shares its filesystem with any neighbour, or may: a neighbour keeplog cannot look
// at counts as shared, so the defaults are the lower watermarks that stay below kubelet's (the safe mistake).
func (s Shared) Any() bool {
	for _, v := range s.With {
		if v {
			return true
		}
	}
	return len(s.Unknown) > 0
}

// FindShared compares the root's st_dev with each neighbour's. devOf reads a path's st_dev (nil: stat(2),
// following symlinks, since the filesystem behind a link is the one that fills).
func FindShared(root string, neighbours []Neighbour, devOf func(string) (uint64, error)) (Shared, error) {
	if devOf == nil {
		devOf = statDev
	}
	rootDev, err := devOf(root)
	if err != nil {
		return Shared{}, fmt.Errorf("gc: the root's filesystem: %w", err)
	}
	s := Shared{With: map[string]bool{}}
	for _, n := range neighbours {
		if n.Path == "" {
			continue
		}
		dev, err := devOf(n.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			s.Missing = append(s.Missing, n.Name)
		case errors.Is(err, fs.ErrPermission):
			// Not reachable from here (the chart stats the runtime's directory through /proc/1/root, which a node may
			// refuse even to a privileged container): it cannot be told, so it may be shared. The plugin runs on.
			s.Unknown = append(s.Unknown, n.Name)
		case err != nil:
			return Shared{}, fmt.Errorf("gc: the filesystem of %s (%s): %w", n.Name, n.Path, err)
		default:
			s.With[n.Name] = dev == rootDev
		}
	}
	return s, nil
}

func statDev(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return st.Dev, nil
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
