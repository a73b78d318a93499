package gc

import (
	"fmt"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// heldMount reports, once per directory until it is deleted, that store.DeletePodDir refused it with
// store.ErrHoldsMount: the directory stays (what is mounted belongs to someone else) and the pass goes on. Later
// passes retry quietly; an admin has to unmount it.
func (g *GC) heldMount(c *candidate, err error) {
	g.mu.Lock()
	if g.heldMounts == nil {
		g.heldMounts = map[string]bool{}
	}
	known := g.heldMounts[c.dir]
	g.heldMounts[c.dir] = true
	g.mu.Unlock()
	if known {
		g.log.V(4).Info("Pod directory still holds a mount; kept", "dir", c.dir, "reason", err)
		return
	}
	g.log.Info("Pod directory not deleted: something is mounted inside it; it is kept until that is unmounted", "dir", c.dir, "reason", err.Error())
	if ref, perr := store.ParsePodDirName(c.dir); perr == nil && g.events != nil {
		g.events.PodEvent(ref, "Warning", api.ReasonLogDirectoryHoldsMount,
			fmt.Sprintf("keeplog keeps the pod's expired log directory on node %s: %v", g.cfg.Node, err))
	}
}

// deletedHeld forgets that a directory held a mount (it was deleted).
func (g *GC) deletedHeld(dir string) {
	g.mu.Lock()
	delete(g.heldMounts, dir)
	g.mu.Unlock()
}
