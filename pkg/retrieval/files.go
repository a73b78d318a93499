package retrieval

import (
	"net/http"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/safefs"
)

// File is one entry of a pod directory's listing.
type File struct {
	Path    string    `json:"path"` // slash-separated, relative to the pod directory
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
}

// FileList is the answer of GET /retained/v1/pods/{dir}/files.
type FileList struct {
	Dir   string `json:"dir"`
	Files []File `json:"files"`
	// Skipped are entries that are never read: symlinks, devices, FIFOs, sockets (path → kind).
	Skipped map[string]string `json:"skipped,omitempty"`
	// NotEntered are directories on another mount or too deep to walk.
	NotEntered []string `json:"notEntered,omitempty"`
}

// listFiles walks the pod directory (safefs.Walk: no symlink followed, nothing but directories opened, no mount
// crossed) and answers its regular files.
func (h *Handler) listFiles(w http.ResponseWriter, r *http.Request) {
	dir := r.PathValue("dir")
	d, err := h.openPodDir(dir)
	if err != nil {
		fail(w, "list files", err)
		return
	}
	defer d.Close()
	out := FileList{Dir: dir, Files: []File{}}
	res, err := safefs.Walk(d, "", func(e safefs.Entry) bool {
		switch e.Kind() {
		case unix.S_IFREG:
			out.Files = append(out.Files, File{Path: e.Rel, Size: e.Stat.Size,
				ModTime: time.Unix(e.Stat.Mtim.Unix()).UTC()})
		case unix.S_IFDIR:
		default:
			if out.Skipped == nil {
				out.Skipped = map[string]string{}
			}
			out.Skipped[e.Rel] = kindName(e.Kind())
		}
		return true
	})
	if err != nil {
		fail(w, "list files", err)
		return
	}
	out.NotEntered = append(res.Mounts, res.TooDeep...)
	writeJSON(w, out)
}

func kindName(k uint32) string {
	switch k {
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "device"
	default:
		return "other"
	}
}
