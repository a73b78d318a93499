package archiver

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/pkg/api"
)

// The status file (api.ArchiveStatusPath) in each pod directory's .keeplog/ lists the archive state of its files. It
// lives in keeplog's own root-owned directory, which the archiver never watches, so writing it causes no event: an
// idle archiver writes nothing. It is replaced with a fresh temporary file + rename, never written through, and only
// when its content (all but the time it was written) changes. Before 0.4 keeplog wrote it in the pod directory itself
// (api.LegacyArchiveStatusFile), where its own watch saw every rewrite; a root-owned regular file of that name is
// removed when a scan finds it.

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
	Path   string    `json:"path"`
	State  string    `json:"state"`
	Size   int64     `json:"size,omitempty"`
	Mtime  time.Time `json:"mtime,omitzero"`
	SHA256 string    `json:"sha256,omitempty"`
	Remote string    `json:"remote,omitempty"`
	// SameAs names the file (path in the pod directory) whose archived copy this file's content is.
	SameAs   string    `json:"sameAs,omitempty"`
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
func (a *Archiver) podStatus(pod podDir) PodStatus {
	ref := pod.ref
	ps := PodStatus{Namespace: ref.Namespace, Pod: ref.Name, UID: ref.UID, Node: a.cfg.NodeName, Updated: a.clk.Now().UTC()}
	for _, it := range a.journal.PodItems(pod.name) {
		fs := FileStatus{
			Path: it.Rel, State: string(it.State), Size: it.Size, Mtime: time.Unix(0, it.MtimeNs).UTC(),
			SHA256: it.SHA256, Remote: it.Remote, Attempts: it.Attempts, Deleted: it.Deleted, Error: it.Error,
			Updated: it.UpdatedAt.UTC(),
		}
		if it.SameAs != "" {
			fs.SameAs = it.SameAs
			if orig, ok := a.journal.Get(it.SameAs); ok {
				fs.SameAs = orig.Rel
			}
		}
		ps.Files = append(ps.Files, fs)
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

// writeStatus replaces a pod directory's status file when what it says changed since it was last written.
func (a *Archiver) writeStatus(pod podDir) {
	ps := a.podStatus(pod)
	updated := ps.Updated
	ps.Updated = time.Time{}
	b, err := json.Marshal(ps)
	if err != nil {
		a.log.Error(err, "Cannot encode archive status", "podDir", pod.name)
		return
	}
	sum := sha256.Sum256(b)
	if a.statusSums[pod] == sum {
		return
	}
	ps.Updated = updated
	if b, err = json.MarshalIndent(ps, "", "  "); err != nil {
		a.log.Error(err, "Cannot encode archive status", "podDir", pod.name)
		return
	}
	if err := a.fs.writeOwnFile(pod.name, api.ArchiveStatusFile, append(b, '\n')); err != nil {
		a.log.V(2).Info("Cannot write archive status file", "podDir", pod.name, "err", err.Error())
		return
	}
	a.statusSums[pod] = sum
	a.m.statusWrites.Inc()
}

// removeLegacyStatus removes the status file an older keeplog wrote in the pod directory itself, if it is a
// root-owned regular file (a file of that name the pod made is the pod's).
func (a *Archiver) removeLegacyStatus(pod podDir) {
	st, err := a.fs.lstat(pod.name, api.LegacyArchiveStatusFile)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != 0 {
		return
	}
	if err := a.fs.remove(pod.name, api.LegacyArchiveStatusFile, st.Ino); err != nil && !errors.Is(err, unix.ENOENT) {
		a.log.V(2).Info("Cannot remove the old archive status file", "podDir", pod.name, "err", err.Error())
	}
}
