package gc

import (
	"errors"
	"io/fs"
	"slices"
	"testing"
)

// TestFindSharedSkipsAnUnreadableNeighbour: a neighbour that cannot be stat-ed for permission (the chart stats the
// runtime's directory through /proc/1/root, which the lab's node refused: the plugin exited and TestChart's
// DaemonSet crash-looped) is not checked, like a missing one; another error still stops the start.
func TestFindSharedSkipsAnUnreadableNeighbour(t *testing.T) {
	devs := map[string]uint64{"/root": 1, "/kubelet": 1}
	devOf := func(p string) (uint64, error) {
		switch p {
		case "/runtime":
			return 0, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrPermission}
		case "/gone":
			return 0, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
		case "/broken":
			return 0, errors.New("input/output error")
		}
		return devs[p], nil
	}
	s, err := FindShared("/root", []Neighbour{{NeighbourKubelet, "/kubelet"}, {NeighbourRuntime, "/runtime"}, {NeighbourPodLogs, "/gone"}}, devOf)
	if err != nil {
		t.Fatal(err)
	}
	if !s.With[NeighbourKubelet] || !slices.Equal(s.Missing, []string{NeighbourRuntime, NeighbourPodLogs}) {
		t.Fatalf("shared %+v", s)
	}
	if _, err := FindShared("/root", []Neighbour{{NeighbourRuntime, "/broken"}}, devOf); err == nil {
		t.Fatal("an I/O error was taken for an absent neighbour")
	}
}
