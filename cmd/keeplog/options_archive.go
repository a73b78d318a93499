package main

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// ArchiveOptions configure the SFTP archiver (pkg/archiver).
type ArchiveOptions struct {
	Target         string
	QuietPeriod    time.Duration
	Bandwidth      string
	NodeUploads    int
	ClusterUploads int
	RescanInterval time.Duration
	LeaseDuration  time.Duration

	bytesPerSecond int64 // parsed from Bandwidth by Validate
}

// AddFlags registers the archiver flags.
func (o *ArchiveOptions) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Target, "archive-target", "", "the archive target, read again before each connection (a changed type or base directory takes a restart): a mounted Secret directory or a JSON file with its keys, SFTP (host, port, user, privateKey or password, knownHosts, baseDir) or S3 (type: s3, endpoint, bucket, accessKeyID, secretAccessKey, ...; docs/archiving-s3.md); empty disables archiving")
	fs.DurationVar(&o.QuietPeriod, "archive-quiet-period", 30*time.Second, "how long a dump must stay unchanged, with no writer, before it is uploaded (at unpublish it is uploaded at once)")
	fs.StringVar(&o.Bandwidth, "archive-bandwidth", "0", "this node's upload rate limit in bytes per second, as a quantity (e.g. 25Mi); 0 means unlimited")
	fs.IntVar(&o.NodeUploads, "archive-node-uploads", 1, "uploads at once on this node")
	fs.IntVar(&o.ClusterUploads, "archive-cluster-uploads", 0, "uploads at once in the whole cluster, coordinated with Leases in --namespace; 0 means no cluster-wide limit")
	fs.DurationVar(&o.RescanInterval, "archive-rescan-interval", 2*time.Minute, "how often every pod directory is rescanned (file events can be lost)")
	fs.DurationVar(&o.LeaseDuration, "archive-lease-duration", 30*time.Second, "how long a cluster upload slot of a node that stopped renewing it stays taken")
}

// Validate checks the archiver flags.
func (o *ArchiveOptions) Validate() error {
	var errs []error
	if o.Target != "" && !filepath.IsAbs(o.Target) {
		errs = append(errs, fmt.Errorf("--archive-target %q must be an absolute path", o.Target))
	}
	if o.QuietPeriod <= 0 {
		errs = append(errs, fmt.Errorf("--archive-quiet-period %s must be positive", o.QuietPeriod))
	}
	if q, err := resource.ParseQuantity(o.Bandwidth); err != nil {
		errs = append(errs, fmt.Errorf("--archive-bandwidth %q is not a quantity such as 25Mi: %v", o.Bandwidth, err))
	} else if v, ok := q.AsInt64(); !ok || v < 0 {
		errs = append(errs, fmt.Errorf("--archive-bandwidth %q must be a whole, non-negative number of bytes per second", o.Bandwidth))
	} else {
		o.bytesPerSecond = v
	}
	if o.NodeUploads < 1 {
		errs = append(errs, fmt.Errorf("--archive-node-uploads %d must be at least 1", o.NodeUploads))
	}
	if o.ClusterUploads < 0 {
		errs = append(errs, fmt.Errorf("--archive-cluster-uploads %d must not be negative", o.ClusterUploads))
	}
	if o.RescanInterval <= 0 {
		errs = append(errs, fmt.Errorf("--archive-rescan-interval %s must be positive", o.RescanInterval))
	}
	if o.LeaseDuration < 3*time.Second {
		errs = append(errs, fmt.Errorf("--archive-lease-duration %s must be at least 3s", o.LeaseDuration))
	}
	return errors.Join(errs...)
}
