package retrieval

import (
	"net/http"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/safefs"
	"github.com/keeplog/keeplog/pkg/retrieval/wire"
)

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
	out := wire.FileList{Dir: dir, Files: []wire.File{}}
	res, err := safefs.Walk(d, "", func(e safefs.Entry) bool {
		switch e.Kind() {
		case unix.S_IFREG:
			out.Files = append(out.Files, wire.File{Path: e.Rel, Size: e.Stat.Size,
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
	out.NotEntered = append(append([]string(nil), res.Mounts...), res.TooDeep...)
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
