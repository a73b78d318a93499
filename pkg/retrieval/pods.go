package retrieval

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"

	"k8s.io/klog/v2"

	"github.com/keeplog/keeplog/internal/safefs"
	"github.com/keeplog/keeplog/pkg/retrieval/wire"
	"github.com/keeplog/keeplog/pkg/store"
)

// listPods answers every pod directory of every volume record. Fallback directories (no pod: a volume published
// without pod information) are left out: without a namespace no user can be authorized for them.
func (h *Handler) listPods(w http.ResponseWriter, _ *http.Request) {
	pods, err := h.pods()
	if err != nil {
		fail(w, "list pods", err)
		return
	}
	writeJSON(w, wire.PodList{Pods: pods})
}

func (h *Handler) pods() ([]wire.Pod, error) {
	vols, err := h.deps.Store.ListVolumes()
	if err != nil {
		return nil, err
	}
	root, err := safefs.OpenDir(h.deps.Store.Root())
	if err != nil {
		return nil, err
	}
	defer root.Close()
	out := []wire.Pod{}
	for _, v := range vols {
		dirs, err := h.deps.Store.PodDirs(v.ID)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted since it was listed
		}
		if err != nil {
			return nil, err
		}
		for _, d := range dirs {
			if d.Pod != nil {
				p := podOf(v, d)
				p.ExpiresAt = expiry(v, d, h.policy)
				p.Archive = archiveOf(root, d.Dir)
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out, nil
}

func podOf(v *store.Volume, d store.PodDir) wire.Pod {
	p := wire.Pod{Dir: d.Dir, Namespace: d.Pod.Namespace, Name: d.Pod.Name, UID: d.Pod.UID, Volume: v.ID, Node: v.Node,
		FirstPublished: d.FirstPublished, LastPublished: d.LastPublished, Annotations: d.Annotations}
	if !d.UnpublishedAt.IsZero() {
		t := d.UnpublishedAt
		p.UnpublishedAt = &t
	}
	return p
}

// archiveOf is the directory's archive state; a directory or status file that cannot be read (gone since it was
// listed, replaced by a symlink) is reported without one, never failing the listing.
func archiveOf(root *os.File, dir string) *wire.ArchiveState {
	d, err := safefs.OpenDirAt(root, dir, false)
	if err != nil {
		klog.V(2).InfoS("Cannot open a pod directory for its archive state", "dir", dir, "err", err)
		return nil
	}
	defer d.Close()
	st, err := archiveState(d)
	if err != nil {
		klog.V(2).InfoS("Cannot read a pod directory's archive state", "dir", dir, "err", err)
	}
	return st
}

// openPodDir opens a pod directory the records know (its name from the request is only a key into them), never
// through a symlink.
func (h *Handler) openPodDir(dir string) (*os.File, error) {
	if err := safefs.CheckName(dir); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadPath, err)
	}
	if _, err := store.ParsePodDirName(dir); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadPath, err)
	}
	if _, p, err := h.deps.Store.Owner(dir); err != nil {
		return nil, err
	} else if p.Pod == nil {
		return nil, fmt.Errorf("pod directory %s has no pod: %w", dir, store.ErrNotFound)
	}
	root, err := safefs.OpenDir(h.deps.Store.Root())
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return safefs.OpenDirAt(root, dir, false)
}
