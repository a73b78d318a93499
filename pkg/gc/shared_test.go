package gc

import (
	"errors"
	"io/fs"
	"slices"
	"testing"
)

// TestFindSharedSkipsAnUnreadableNeighbour: a neighbour that cannot be stat-ed for permission (the chart stats the
// runtime's directory through /proc/1/root, which the lab's node refused: the plugin exited and TestChart's
// DaemonSet crash-looped) does not stop the start; it cannot be told, so it counts as shared (the lower defaults);
// a missing one is absent; another error still stops the start.
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
	if !s.With[NeighbourKubelet] || !slices.Equal(s.Unknown, []string{NeighbourRuntime}) || !slices.Equal(s.Missing, []string{NeighbourPodLogs}) {
		t.Fatalf("shared %+v", s)
	}
	devs["/kubelet"] = 2 // on another filesystem: only the unreadable runtime directory is left to tell
	s, err = FindShared("/root", []Neighbour{{NeighbourKubelet, "/kubelet"}, {NeighbourRuntime, "/runtime"}}, devOf)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Any() {
		t.Fatalf("shared %+v: a neighbour that cannot be looked at must count as shared (the lower defaults)", s)
	}
	s, _ = FindShared("/root", []Neighbour{{NeighbourKubelet, "/kubelet"}, {NeighbourPodLogs, "/gone"}}, devOf)
	if s.Any() {
		t.Fatalf("shared %+v: nothing shared and nothing unknown", s)
	}
	if _, err := FindShared("/root", []Neighbour{{NeighbourRuntime, "/broken"}}, devOf); err == nil {
		t.Fatal("an I/O error was taken for an absent neighbour")
	}
}
