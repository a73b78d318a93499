package main

import (
	"errors"
	"path/filepath"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/archiver"
	"github.com/keeplog/keeplog/pkg/semaphore"
	"github.com/keeplog/keeplog/pkg/store"
)

// uploadLeasePrefix names the Leases of the cluster-wide upload semaphore: <prefix>-0 … <prefix>-(N-1).
const uploadLeasePrefix = "keeplog-upload"

// setupArchiver adds the archiver (SFTP or S3) when --archive-target is set.
func setupArchiver(c *components) error {
	o := c.opts.Archive
	if o.Target == "" {
		klog.InfoS("Archiving is off (no --archive-target)")
		return nil
	}
	dialer, target, err := newReloadingDialer(o.Target, c.opts.NodeID, klog.Background())
	if err != nil {
		return err
	}
	deps := archiver.Deps{Root: c.opts.Root, StateDir: filepath.Join(c.opts.Root, api.KeeplogDir, api.ArchiveJournalDir),
		Dialer: dialer, Registerer: c.reg, Log: klog.Background(), Liveness: c.live,
		Policy: c.archivePolicies.For, Retained: retained(c.store)}
	if c.events != nil {
		deps.Recorder = c.events
	}
	if o.ClusterUploads > 0 {
		if c.kube == nil {
			return errors.New("--archive-cluster-uploads needs access to the Kubernetes API (Leases)")
		}
		sem, err := semaphore.New(c.kube.Leases(c.opts.Namespace), semaphore.Config{Namespace: c.opts.Namespace,
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
	klog.InfoS("Archiving", "target", dialer.String(), "bytesPerSecond", o.bytesPerSecond,
		"nodeUploads", o.NodeUploads, "clusterUploads", o.ClusterUploads)
	c.archiver = a
	c.deps.Archiver = a
	c.add("archiver", a.Run)
	return nil
}

// retained says whether the records say a pod directory is unpublished (the archiver does not watch those).
func retained(s *store.Store) func(string) bool {
	return func(dir string) bool {
		p, err := s.PodDirRecord(dir)
		return err == nil && !p.UnpublishedAt.IsZero()
	}
}

// archiveDialer loads the archive target Secret at p (SFTP, or S3 with `type: s3`) and returns the dialer, the
// target the archiver names remote paths under, a description without credentials, and the type.
func archiveDialer(p, node string) (archiver.Dialer, archiver.Target, string, string, error) {
	typ, err := archiver.TargetType(p)
	if err != nil {
		return nil, archiver.Target{}, "", "", err
	}
	if typ == "s3" {
		t, err := archiver.LoadS3Target(p)
		if err != nil {
			return nil, archiver.Target{}, "", "", err
		}
		d, err := archiver.NewS3Dialer(t, archiver.S3DialerOptions{NodeName: node})
		return d, archiver.Target{BaseDir: t.BaseDir()}, t.String(), typ, err
	}
	t, err := archiver.LoadTarget(p)
	if err != nil {
		return nil, archiver.Target{}, "", "", err
	}
	d, err := archiver.NewSSHDialer(t, archiver.SSHDialerOptions{})
	return d, t, t.String(), typ, err
}
