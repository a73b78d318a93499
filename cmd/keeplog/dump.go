package main

import (
	"errors"
	"net/http"
	"path/filepath"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/dump"
	"github.com/keeplog/keeplog/pkg/semaphore"
)

// dumpLeasePrefix names the Leases of the cluster-wide dump semaphore: <prefix>-0 … <prefix>-(N-1).
const dumpLeasePrefix = "keeplog-dump"

// dumpLivenessBound is how long the dump manager's poll loop may go without progress before /healthz fails. The
// loop only reads the watched containers' memory (cgroup files) and the pod informer's cache, recording progress
// after each pod and on a heartbeat; the dumps themselves, which take minutes (--dump-timeout), run in their own
// goroutines. Five minutes, or five poll intervals when --dump-poll-interval is longer, is far beyond a healthy
// poll.
func dumpLivenessBound(poll time.Duration) time.Duration { return max(5*time.Minute, 5*poll) }

// setupDump adds heap dumps on demand and under memory pressure (pkg/dump) and, with --dump-webhook, the
// Alertmanager receiver. Both need the API: pods opt in by annotations, which the node's pod informer delivers.
// Run it after setupArchiver: a dump's cluster slot is held until the archiver has uploaded the file.
func setupDump(c *components) error {
	o := c.opts.Dump
	if c.pods == nil {
		klog.InfoS("Heap dumps are off (no Kubernetes API access: pods opt in by annotations)")
		return nil
	}
	deps := dump.Deps{
		Pods:    c.pods.Get,
		Memory:  dump.NewCgroupReader(o.CgroupRoot),
		Events:  c.events,
		Archive: c.archivePolicies.Patterns,
		Clock:   clock.RealClock{}, Registerer: c.reg, Log: klog.Background().WithName("dump"),
		Liveness: c.live.Loop("dump", dumpLivenessBound(o.PollInterval)),
		HTTP:     &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
	}
	if c.archiver != nil {
		deps.Pending = c.archiver.Pending
	}
	if ex, err := dump.NewAPIExecer(c.restCfg, c.kube); err != nil {
		klog.InfoS("dump-exec is not available: pods that ask for it get a DumpSkipped Event", "reason", err)
	} else {
		deps.Exec = ex
	}
	if o.ClusterMax > 0 {
		sem, err := semaphore.New(c.kube.Leases(c.opts.Namespace), semaphore.Config{Namespace: c.opts.Namespace,
			Prefix: dumpLeasePrefix, Slots: o.ClusterMax, Holder: c.opts.NodeID, LeaseDuration: o.LeaseDuration},
			clock.RealClock{})
		if err != nil {
			return err
		}
		deps.Semaphore = sem
	}
	m, err := dump.New(dump.Config{Root: c.opts.Root, StateDir: filepath.Join(c.opts.Root, api.KeeplogDir, api.DumpStateDir),
		PollInterval: o.PollInterval, Cooldown: o.Cooldown, Timeout: o.Timeout, SlotWait: o.SlotWait,
		QuietPeriod: o.QuietPeriod, HostNetworkAddress: o.HostNetworkAddress}, deps)
	if err != nil {
		return err
	}
	if err := c.pods.OnChange(m.Observe); err != nil {
		return err
	}
	c.add("heap dumps", m.Run)
	klog.InfoS("Heap dumps on demand and under memory pressure", "cgroupRoot", o.CgroupRoot, "clusterMax", o.ClusterMax,
		"cooldown", o.Cooldown, "timeout", o.Timeout, "webhook", o.Webhook)
	if o.Webhook {
		if c.opts.HTTPAddress == "" {
			return errors.New("--dump-webhook needs --http-address")
		}
		if o.WebhookTokenFile == "" {
			klog.InfoS("WARNING: the Alertmanager webhook accepts requests without authentication (no --dump-webhook-token-file)")
		}
		if c.handlers == nil {
			c.handlers = map[string]http.Handler{}
		}
		wh, err := dump.NewWebhook(c.kube, o.WebhookTokenFile, klog.Background().WithName("dump-webhook"), c.reg)
		if err != nil {
			return err
		}
		c.handlers[dump.WebhookPath] = wh
	}
	return nil
}
