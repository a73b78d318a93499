package main

import (
	"context"
	"fmt"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/gc"
)

// gcLeaseName is the Lease of the leader that cleans up the PVs of vanished nodes.
const gcLeaseName = "keeplog-gc-leader"

// gcLivenessBound is how long the garbage collector's loop may go without progress before /healthz fails. The loop
// records progress at each pass, after the inventory, after each directory it deletes and on a heartbeat while it
// waits, so only one step must fit: the inventory of every pod directory (one record read per directory, in
// parallel: 20,000 directories are 20,000 small reads) or the deletion of one directory, which may hold millions of
// files. Ten minutes is generous for both (not measured at that size) and still restarts a wedged plugin within
// minutes.
const gcLivenessBound = 10 * time.Minute

// findShared finds, once at start, which of kubelet's root dir, its pod logs and the runtime's directory share the
// root's filesystem, and logs it: the watermarks' defaults follow (options_gc.go), and docs/retention.md says how to set
// both sides.
func findShared(o *Options) (gc.Shared, error) {
	shared, err := gc.FindShared(o.Root, []gc.Neighbour{{Name: gc.NeighbourKubelet, Path: o.GC.KubeletRootDir},
		{Name: gc.NeighbourPodLogs, Path: o.PodLogsDir}, {Name: gc.NeighbourRuntime, Path: o.GC.RuntimeDir}}, nil)
	if err != nil {
		return gc.Shared{}, err
	}
	klog.InfoS("Filesystems the root shares (kubelet's eviction and image garbage collection act on them too)", "root", o.Root,
		"kubelet", shared.With[gc.NeighbourKubelet], "kubeletRootDir", o.GC.KubeletRootDir,
		"podLogs", shared.With[gc.NeighbourPodLogs], "podLogsDir", o.PodLogsDir,
		"runtime", shared.With[gc.NeighbourRuntime], "runtimeDir", o.GC.RuntimeDir, "notFound", shared.Missing,
		"cannotTell", shared.Unknown)
	return shared, nil
}

// setupGC adds the garbage collector (pkg/gc): retention and disk pressure on this node, new volumes refused past
// the hard limit, and, with API access, Released PVs let go and (one leader in the cluster) PVs of vanished nodes
// deleted.
func setupGC(c *components) error {
	o := c.opts.GC
	deps := gc.Deps{Log: klog.Background(), Store: c.store, Clock: clock.RealClock{}, Kube: c.gcAPI(), Registerer: c.reg, Forget: c.policy.Forget,
		Liveness: c.live.Loop("gc", gcLivenessBound)}
	if c.archiver != nil {
		deps.Archive = c.archiver
	}
	if c.usage != nil {
		deps.Sizes = c.usage // run after setupUsage: the tracker already knows every directory's size
	}
	if c.pods != nil {
		deps.Live = c.pods.Annotations
	}
	if c.events != nil {
		deps.Events = c.events
	}
	shared, err := findShared(c.opts)
	if err != nil {
		return err
	}
	cfg, err := o.config(c.opts.NodeID, c.opts.DriverName, shared)
	if err != nil {
		return fmt.Errorf("invalid flags: %w", err)
	}
	g, err := gc.New(cfg, deps)
	if err != nil {
		return err
	}
	c.gc = g
	c.deps.Admission = g
	c.add("garbage collector", g.Run)
	klog.InfoS("Garbage collection", "retainFor", o.RetainFor, "maxRetainFor", o.MaxRetainFor, "interval", o.Interval,
		"dryRun", o.DryRun, "highWatermark", cfg.HighWatermark, "lowWatermark", cfg.LowWatermark, "hardLimit", cfg.HardLimit,
		"inodeHighWatermark", cfg.InodeHighWatermark, "inodeLowWatermark", cfg.InodeLowWatermark, "inodeHardLimit", cfg.InodeHardLimit,
		"deleteUnarchived", o.DeleteUnarchived, "archiveAware", deps.Archive != nil)
	if c.kube == nil {
		klog.InfoS("No Kubernetes API access: Released PVs and PVs of vanished nodes are left alone")
		return nil
	}
	orphans, err := gc.NewOrphanPVs(gc.OrphanConfig{Log: klog.Background(), DriverName: c.opts.DriverName, TopologyKey: api.TopologyKey,
		Grace: o.OrphanPVGrace, DryRun: o.DryRun}, c.gcAPI(), clock.RealClock{}, g)
	if err != nil {
		return err
	}
	lc := gc.LeaderConfig{Log: klog.Background(), Namespace: c.opts.Namespace, Name: gcLeaseName, Identity: c.opts.NodeID}
	c.add("garbage collector leader election", func(ctx context.Context) error {
		return gc.RunElected(ctx, c.kube.Leases(c.opts.Namespace), lc, func(ctx context.Context) { orphans.Run(ctx, o.Interval) })
	})
	return nil
}

// gcAPI is c.kube's PV and node clients as the collector's API; nil without API access.
func (c *components) gcAPI() *gc.API {
	if c.kube == nil {
		return nil
	}
	return &gc.API{PVs: c.kube.PersistentVolumes(), Nodes: c.kube.Nodes()}
}
