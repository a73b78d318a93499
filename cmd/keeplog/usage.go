package main

import (
	"path/filepath"
	"time"

	"k8s.io/klog/v2"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/usage"
)

// usageLoopBound is how long the usage tracker's loop may go without progress before /healthz fails. The loop
// records progress at each iteration, for each pod directory and every 256 entries a walk visits (even at
// --usage-walk-rate=1, 256 entries take 256 s), and on a heartbeat while
// idle; so only a loop stuck in one call (a hung stat on a dead filesystem, an Enforcer that never returns) passes it.
const usageLoopBound = 5 * time.Minute

// setupUsage adds usage accounting and volume limits (pkg/usage): NodeGetVolumeStats and GetCapacity read from it.
func setupUsage(c *components) error {
	o := c.opts.Usage
	deps := usage.Deps{Log: klog.Background(), Store: c.store, Registerer: c.reg}
	if c.live != nil {
		deps.Live = c.live.Loop("usage", max(usageLoopBound, 2*o.UpdateInterval))
	}
	if c.events != nil {
		deps.Events = c.events
	}
	if o.Enforcer == enforcerImmutable {
		e, err := usage.NewAttrEnforcer(filepath.Join(c.opts.Root, api.KeeplogDir, api.BlockedRecordsDir))
		if err != nil {
			return err
		}
		if err := e.Probe(); err != nil {
			// keeplog still serves; volumes with limitAction block get a Warning Event saying nothing is stopped.
			klog.ErrorS(err, "limitAction block cannot be enforced on this node: the root's filesystem does not take the immutable attribute (or keeplog lacks CAP_LINUX_IMMUTABLE); block acts as warn", "root", c.opts.Root)
		} else {
			deps.Enforcer = e
		}
	}
	tr, err := usage.New(o.config(), deps)
	if err != nil {
		return err
	}
	c.deps.Usage, c.usage = tr, tr
	c.add("usage", tr.Run)
	return nil
}
