package main

import (
	"errors"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/archiver"
	"github.com/keeplog/keeplog/pkg/kube"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/semaphore"
	"github.com/keeplog/keeplog/pkg/store"
)

// uploadLeasePrefix names the Leases of the cluster-wide upload semaphore: <prefix>-0 … <prefix>-(N-1).
const uploadLeasePrefix = "keeplog-upload"

// setupArchiver adds the SFTP archiver when --archive-target is set.
func setupArchiver(c *components) error {
	o := c.opts.Archive
	if o.Target == "" {
		klog.InfoS("Archiving is off (no --archive-target)")
		return nil
	}
	target, err := archiver.LoadTarget(o.Target)
	if err != nil {
		return err
	}
	dialer, err := archiver.NewSSHDialer(target, archiver.SSHDialerOptions{})
	if err != nil {
		return err
	}
	deps := archiver.Deps{Root: c.opts.Root, StateDir: filepath.Join(c.opts.Root, api.KeeplogDir, api.ArchiveJournalDir),
		Dialer: dialer, Registerer: c.reg, Log: klog.Background(), Liveness: c.live,
		Policy: archivePolicy(c.policy, c.events, time.Now)}
	if c.events != nil {
		deps.Recorder = podEvents{c.events}
	}
	if o.ClusterUploads > 0 {
		if c.kube == nil {
			return errors.New("--archive-cluster-uploads needs access to the Kubernetes API (Leases)")
		}
		sem, err := semaphore.New(c.kube.CoordinationV1(), semaphore.Config{Namespace: c.opts.Namespace,
			Prefix: uploadLeasePrefix, Slots: o.ClusterUploads, Holder: c.opts.NodeID, LeaseDuration: o.LeaseDuration},
			clock.RealClock{})
		if err != nil {
			return err
		}
		deps.Semaphore = sem
	}
	a, err := archiver.New(archiver.Config{NodeName: c.opts.NodeID, Target: target, QuietPeriod: o.QuietPeriod,
		RescanInterval: o.RescanInterval, BytesPerSecond: o.bytesPerSecond, MaxConcurrentUploads: o.NodeUploads}, deps)
	if err != nil {
		return err
	}
	klog.InfoS("Archiving", "target", target.String(), "bytesPerSecond", o.bytesPerSecond,
		"nodeUploads", o.NodeUploads, "clusterUploads", o.ClusterUploads)
	c.deps.Archiver = a
	c.add("archiver", a.Run)
	return nil
}

// podEvents sends the archiver's events as Kubernetes Events on the pod.
type podEvents struct{ e *kube.Events }

func (p podEvents) Event(pod archiver.PodRef, eventType, reason, message string) {
	p.e.PodEvent(pod, eventType, reason, message)
}

// policyCacheTTL bounds how stale a pod directory's archive policy may be: the archiver asks for every file it
// visits, and resolving reads the store.
const policyCacheTTL = 5 * time.Second

// policyCacheMax is the cache size at which expired entries are dropped.
const policyCacheMax = 1024

// archivePolicy maps the resolved policy of a pod directory to the archiver's. Warnings (a malformed annotation)
// become a Warning Event on the pod the first time they are seen.
func archivePolicy(r *policy.Resolver, events *kube.Events, now func() time.Time) func(string) archiver.Policy {
	type cached struct {
		p  archiver.Policy
		at time.Time
	}
	var mu sync.Mutex
	cache := map[string]cached{}
	warned := map[string]string{}
	return func(dir string) archiver.Policy {
		mu.Lock()
		defer mu.Unlock()
		if c, ok := cache[dir]; ok && now().Sub(c.at) < policyCacheTTL {
			return c.p
		}
		p, warns, err := r.For(dir)
		if err != nil {
			klog.V(2).InfoS("Archive policy from defaults", "dir", dir, "reason", err)
		}
		if len(warns) > 0 {
			msg := errors.Join(warns...).Error()
			if ref, err := store.ParsePodDirName(dir); err == nil && warned[dir] != msg {
				warned[dir] = msg
				events.PodEvent(ref, "Warning", api.ReasonInvalidKeeplogSetting, msg)
			}
		}
		ap := archiver.Policy{Off: !p.Archive, Patterns: p.ArchivePatterns, DeleteAfterUpload: p.DeleteAfterUpload,
			FirstOnly: p.FirstOnly, FirstOnlyReset: p.FirstOnlyReset, Compression: p.ArchiveCompression,
			CompressionLevel: p.ArchiveCompressionLevel, Sparse: string(p.ArchiveSparse)}
		if len(cache) >= policyCacheMax { // drop what expired: directories come and go
			for d, c := range cache {
				if now().Sub(c.at) >= policyCacheTTL {
					delete(cache, d)
					delete(warned, d)
				}
			}
		}
		cache[dir] = cached{p: ap, at: now()}
		return ap
	}
}
