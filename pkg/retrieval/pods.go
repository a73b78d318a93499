package retrieval

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"

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
				out = append(out, podOf(v, d))
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
