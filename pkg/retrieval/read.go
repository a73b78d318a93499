package retrieval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/keeplog/keeplog/internal/safefs"
)

// errBadPath marks a request path that is not a clean relative path of single components (answered 400).
var errBadPath = errors.New("not a valid path inside a pod directory")

// maxPathLen bounds a requested path (PATH_MAX).
const maxPathLen = 4096

// splitPath checks a requested relative path and returns its components: no leading slash, no empty, ".", ".."
// component, no NUL (safefs.CheckName on each).
func splitPath(p string) ([]string, error) {
	if p == "" || len(p) > maxPathLen || strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("%w: %q", errBadPath, p)
	}
	parts := strings.Split(p, "/")
	for _, c := range parts {
		if err := safefs.CheckName(c); err != nil {
			return nil, fmt.Errorf("%w: %w", errBadPath, err)
		}
	}
	return parts, nil
}

// openIn opens the regular file at parts below the pod directory d: each directory with safefs.OpenSubdirAt (no
// symlink, on d's mount), the file with safefs.OpenFileAt (proven regular before it is opened) and on d's mount.
func openIn(d *os.File, parts []string) (*os.File, unix.Stat_t, error) {
	var none unix.Stat_t
	want, err := safefs.MountOf(d)
	if err != nil {
		return nil, none, err
	}
	cur := d
	defer func() {
		if cur != d {
			cur.Close()
		}
	}()
	for _, name := range parts[:len(parts)-1] {
		next, err := safefs.OpenSubdirAt(cur, name)
		if err != nil {
			return nil, none, err
		}
		if cur != d {
			cur.Close()
		}
		cur = next
	}
	f, st, err := safefs.OpenFileAt(cur, parts[len(parts)-1], unix.O_RDONLY)
	if err != nil {
		return nil, none, err
	}
	got, err := safefs.MountOf(f)
	if err == nil && got != want {
		err = fmt.Errorf("file %s: %w", path.Join(parts...), safefs.ErrOtherMount)
	}
	if err != nil {
		f.Close()
		return nil, none, err
	}
	return f, st, nil
}

// readFile streams one regular file: GET .../pods/{dir}/file?path=a/b.log, Range and If-Range honoured (the ETag
// is the inode, size and mtime, so a resumed download of a file that changed gets the whole file again).
func (h *Handler) readFile(w http.ResponseWriter, r *http.Request) {
	parts, err := splitPath(r.URL.Query().Get("path"))
	if err != nil {
		fail(w, "read file", err)
		return
	}
	d, err := h.openPodDir(r.PathValue("dir"))
	if err != nil {
		fail(w, "read file", err)
		return
	}
	defer d.Close()
	f, st, err := openIn(d, parts)
	if err != nil {
		fail(w, "read file", err)
		return
	}
	defer f.Close()
	select {
	case h.streams <- struct{}{}:
		defer func() { <-h.streams }()
	default:
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many downloads from this node at once", http.StatusTooManyRequests)
		return
	}
	mtime := time.Unix(st.Mtim.Unix())
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", fmt.Sprintf(`"%x-%x-%x"`, st.Ino, st.Size, mtime.UnixNano()))
	// The size is the one proven at open: a file the pod still appends to is served up to that size.
	body := io.NewSectionReader(&limitedReaderAt{f: f, ctx: r.Context(), lim: h.limiter}, 0, st.Size)
	http.ServeContent(w, r, "", mtime, body)
}

// limitedReaderAt reads the file at most chunk bytes at a time, each after waiting for as many tokens of the
// node's bucket; the request's end stops the wait.
type limitedReaderAt struct {
	f   *os.File
	ctx context.Context
	lim *rate.Limiter
}

func (l *limitedReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if len(p) > chunk {
		p = p[:chunk]
	}
	if err := l.lim.WaitN(l.ctx, len(p)); err != nil {
		return 0, err
	}
	return l.f.ReadAt(p, off)
}
