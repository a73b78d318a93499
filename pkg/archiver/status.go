package archiver

import (
	"encoding/json"
	"sort"
	"time"

	"github.com/keeplog/keeplog/pkg/store"
)

// StatusFileName is the file in each pod directory that lists the archive
// state of its files. The pod may write its own directory, so it is
// replaced with a fresh temporary file + rename, never written through.
const StatusFileName = ".keeplog-archive-status.json"

// States that appear only in the status file (besides the ItemStates).
const (
	// StatusSettling: matches the patterns but is not known to be finished.
	StatusSettling = "settling"
	// StatusRejected: matches the patterns but is a symlink or not a
	// regular file; never read.
	StatusRejected = "rejected"
)

// FileStatus is one line of the status file.
type FileStatus struct {
	Path     string    `json:"path"`
	State    string    `json:"state"`
	Size     int64     `json:"size,omitempty"`
	Mtime    time.Time `json:"mtime,omitzero"`
	SHA256   string    `json:"sha256,omitempty"`
	Remote   string    `json:"remote,omitempty"`
	Attempts int       `json:"attempts,omitempty"`
	Deleted  bool      `json:"deletedAfterUpload,omitempty"`
	Error    string    `json:"error,omitempty"`
	Updated  time.Time `json:"updated,omitzero"`
}

// PodStatus is the content of the status file.
type PodStatus struct {
	Namespace string       `json:"namespace"`
	Pod       string       `json:"pod"`
	UID       string       `json:"uid"`
	Node      string       `json:"node"`
	Updated   time.Time    `json:"updated"`
	Files     []FileStatus `json:"files"`
}

// podStatus assembles a pod directory's status (main loop only: it reads
// the settler and the rejected set).
func (a *Archiver) podStatus(pod string) PodStatus {
	ref, _ := store.ParsePodDirName(pod)
	ps := PodStatus{Namespace: ref.Namespace, Pod: ref.Name, UID: ref.UID, Node: a.cfg.NodeName, Updated: a.clk.Now().UTC()}
	for _, it := range a.journal.PodItems(pod) {
		ps.Files = append(ps.Files, FileStatus{
			Path: it.Rel, State: string(it.State), Size: it.Size, Mtime: time.Unix(0, it.MtimeNs).UTC(),
			SHA256: it.SHA256, Remote: it.Remote, Attempts: it.Attempts, Deleted: it.Deleted, Error: it.Error,
			Updated: it.UpdatedAt.UTC(),
		})
	}
	for _, f := range a.settler.all() {
		if f.pod == pod {
			ps.Files = append(ps.Files, FileStatus{Path: f.rel, State: StatusSettling, Size: f.state.Size,
				Mtime: time.Unix(0, f.state.MtimeNs).UTC()})
		}
	}
	for rel, why := range a.rejected[pod] {
		ps.Files = append(ps.Files, FileStatus{Path: rel, State: StatusRejected, Error: why})
	}
	sort.SliceStable(ps.Files, func(i, j int) bool { return ps.Files[i].Path < ps.Files[j].Path })
	return ps
}

// writeStatus replaces a pod directory's status file.
func (a *Archiver) writeStatus(pod string) {
	b, err := json.MarshalIndent(a.podStatus(pod), "", "  ")
	if err != nil {
		a.log.Error(err, "Cannot encode archive status", "podDir", pod)
		return
	}
	if err := a.fs.writeFile(pod, StatusFileName, append(b, '\n'), 0o644); err != nil {
		a.log.V(2).Info("Cannot write archive status file", "podDir", pod, "err", err.Error())
	}
}
