package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/keeplog/keeplog/pkg/dump"
)

// DumpOptions configure heap dumps on demand and under memory pressure (pkg/dump).
type DumpOptions struct {
	CgroupRoot         string
	PollInterval       time.Duration
	ClusterMax         int
	Cooldown           time.Duration
	Timeout            time.Duration
	SlotWait           time.Duration
	QuietPeriod        time.Duration
	LeaseDuration      time.Duration
	HostNetworkAddress string
	Webhook            bool
	WebhookTokenFile   string
	// WebhookAllowUnauthenticated accepts a webhook without a token on a non-loopback --http-address.
	WebhookAllowUnauthenticated bool
}

// AddFlags registers the dump flags.
func (o *DumpOptions) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.CgroupRoot, "cgroup-root", "/sys/fs/cgroup", "where the node's cgroup filesystems are mounted (v1: <root>/memory; v2: unified at <root>); containers' memory is read there")
	fs.DurationVar(&o.PollInterval, "dump-poll-interval", dump.DefaultPollInterval, "how often the memory of containers that opted in to heap dumps is read")
	fs.IntVar(&o.ClusterMax, "dump-cluster-max", 1, "heap dumps at once in the whole cluster, coordinated with Leases (keeplog-dump-N) in --namespace; a slot is held until the dump file is finished and archived; 0 means no cluster-wide limit")
	fs.DurationVar(&o.Cooldown, "dump-cooldown", dump.DefaultCooldown, "after a container's dump, how long memory pressure does not dump it again")
	fs.DurationVar(&o.Timeout, "dump-timeout", dump.DefaultTimeout, "the longest a dump may take from the request until its file is finished and archived (then its cluster slot is released)")
	fs.DurationVar(&o.SlotWait, "dump-slot-wait", dump.DefaultSlotWait, "how long a dump waits for a cluster-wide slot before it is skipped (under memory pressure it is tried again at a later poll)")
	fs.DurationVar(&o.QuietPeriod, "dump-quiet-period", dump.DefaultQuietPeriod, "how long a new dump file must stay unchanged to count as written")
	fs.DurationVar(&o.LeaseDuration, "dump-lease-duration", 30*time.Second, "how long a cluster dump slot of a node that stopped renewing it stays taken")
	fs.StringVar(&o.HostNetworkAddress, "dump-host-network-address", "127.0.0.1", "address of dump-port requests to hostNetwork pods (keeplog runs in the node's network namespace, so loopback reaches them); empty: the pod IP")
	fs.BoolVar(&o.Webhook, "dump-webhook", false, "serve an Alertmanager webhook receiver at "+dump.WebhookPath+" on --http-address: a firing alert for a pod requests a dump of it (needs patch on pods)")
	fs.StringVar(&o.WebhookTokenFile, "dump-webhook-token-file", "", "file holding the bearer token the webhook requires (Authorization: Bearer <token>); empty: no authentication, refused on a non-loopback --http-address without --dump-webhook-allow-unauthenticated")
	fs.BoolVar(&o.WebhookAllowUnauthenticated, "dump-webhook-allow-unauthenticated", false, "serve --dump-webhook without a token on a non-loopback --http-address: anyone who reaches it can request heap dumps of opted-in pods")
}

// Validate checks the dump flags.
func (o *DumpOptions) Validate() error {
	var errs []error
	if !filepath.IsAbs(o.CgroupRoot) {
		errs = append(errs, fmt.Errorf("--cgroup-root %q must be absolute", o.CgroupRoot))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--dump-poll-interval", o.PollInterval}, {"--dump-cooldown", o.Cooldown}, {"--dump-timeout", o.Timeout},
		{"--dump-slot-wait", o.SlotWait}, {"--dump-quiet-period", o.QuietPeriod}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %s must be positive", d.name, d.v))
		}
	}
	if o.QuietPeriod >= o.Timeout {
		errs = append(errs, fmt.Errorf("--dump-quiet-period %s must be shorter than --dump-timeout %s", o.QuietPeriod, o.Timeout))
	}
	if o.ClusterMax < 0 {
		errs = append(errs, fmt.Errorf("--dump-cluster-max %d must not be negative", o.ClusterMax))
	}
	if o.LeaseDuration < 3*time.Second {
		errs = append(errs, fmt.Errorf("--dump-lease-duration %s must be at least 3s", o.LeaseDuration))
	}
	if o.HostNetworkAddress != "" && net.ParseIP(o.HostNetworkAddress) == nil {
		errs = append(errs, fmt.Errorf("--dump-host-network-address %q must be an IP address", o.HostNetworkAddress))
	}
	if o.WebhookTokenFile != "" && !filepath.IsAbs(o.WebhookTokenFile) {
		errs = append(errs, fmt.Errorf("--dump-webhook-token-file %q must be absolute", o.WebhookTokenFile))
	}
	return errors.Join(errs...)
}
