package main

import (
	"path/filepath"

	"k8s.io/klog/v2"

	"github.com/keeplog/keeplog/pkg/store"
	"github.com/keeplog/keeplog/pkg/usage"
)

// setupUsage adds usage accounting and volume limits (pkg/usage): NodeGetVolumeStats and GetCapacity read from it.
func setupUsage(c *components) error {
	o := c.opts.Usage
	deps := usage.Deps{Store: c.store, Registerer: c.reg}
	if c.events != nil {
		deps.Events = c.events
	}
	if o.Enforcer == enforcerImmutable {
		e, err := usage.NewAttrEnforcer(filepath.Join(c.opts.Root, store.StateDirName, "usage", "blocked"))
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
	c.deps.Usage = tr
	c.add("usage", tr.Run)
	return nil
}
