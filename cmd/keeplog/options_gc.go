package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/keeplog/keeplog/pkg/gc"
	"github.com/keeplog/keeplog/pkg/policy"
)

// GCOptions configure retention and garbage collection (pkg/gc).
type GCOptions struct {
	RetainFor        time.Duration
	MaxRetainFor     time.Duration
	Interval         time.Duration
	DryRun           bool
	HighWatermark    float64
	LowWatermark     float64
	HardLimit        float64
	DeleteUnarchived bool
	OrphanPVGrace    time.Duration
}

// AddFlags registers the GC flags.
func (o *GCOptions) AddFlags(fs *flag.FlagSet) {
	fs.DurationVar(&o.RetainFor, "retain-for", policy.DefaultRetainFor, "how long a pod directory is kept after its pod's volume is unpublished, unless the StorageClass (retainFor) or the pod (keeplog.csi.io/retain-for) says otherwise")
	fs.DurationVar(&o.MaxRetainFor, "max-retain-for", 30*24*time.Hour, "the longest retention a StorageClass or a pod may ask for")
	fs.DurationVar(&o.Interval, "gc-interval", time.Minute, "how often the garbage collector looks at every pod directory")
	fs.BoolVar(&o.DryRun, "gc-dry-run", false, "log what the garbage collector would delete (directories, records, PVs) and delete nothing")
	fs.Float64Var(&o.HighWatermark, "disk-high-watermark", 90, "percent of the root's filesystem in use above which pod directories are deleted before their retention ends (archived ones first, oldest first)")
	fs.Float64Var(&o.LowWatermark, "disk-low-watermark", 80, "percent in use that disk-pressure deletion brings the root's filesystem under")
	fs.Float64Var(&o.HardLimit, "disk-hard-limit", 95, "percent in use at which new volumes are refused (ResourceExhausted)")
	fs.BoolVar(&o.DeleteUnarchived, "gc-delete-unarchived", false, "under disk pressure, also delete pod directories the archiver has not finished uploading (never for mere retention)")
	fs.DurationVar(&o.OrphanPVGrace, "orphan-pv-grace", 24*time.Hour, "how long a PV whose node no longer exists is kept before the leader deletes it (and how old a volume record without PV and directories must be before it is dropped)")
}

// Validate checks the GC flags.
func (o *GCOptions) Validate() error {
	var errs []error
	if o.RetainFor <= 0 {
		errs = append(errs, fmt.Errorf("--retain-for %s must be positive", o.RetainFor))
	}
	if o.MaxRetainFor < o.RetainFor {
		errs = append(errs, fmt.Errorf("--max-retain-for %s must not be shorter than --retain-for %s", o.MaxRetainFor, o.RetainFor))
	}
	if o.Interval < time.Second {
		errs = append(errs, fmt.Errorf("--gc-interval %s must be at least 1s", o.Interval))
	}
	for _, w := range []struct {
		name string
		v    float64
	}{{"--disk-high-watermark", o.HighWatermark}, {"--disk-low-watermark", o.LowWatermark}, {"--disk-hard-limit", o.HardLimit}} {
		if w.v <= 0 || w.v > 100 {
			errs = append(errs, fmt.Errorf("%s %g must be a percentage in (0, 100]", w.name, w.v))
		}
	}
	if o.LowWatermark >= o.HighWatermark {
		errs = append(errs, fmt.Errorf("--disk-low-watermark %g must be below --disk-high-watermark %g", o.LowWatermark, o.HighWatermark))
	}
	if o.HighWatermark > o.HardLimit {
		errs = append(errs, fmt.Errorf("--disk-high-watermark %g must not exceed --disk-hard-limit %g", o.HighWatermark, o.HardLimit))
	}
	if o.OrphanPVGrace <= 0 {
		errs = append(errs, fmt.Errorf("--orphan-pv-grace %s must be positive", o.OrphanPVGrace))
	}
	return errors.Join(errs...)
}

// policyDefaults are the retention defaults pods and StorageClasses may override.
func (o *GCOptions) policyDefaults() policy.Defaults {
	return policy.Defaults{RetainFor: o.RetainFor, MaxRetainFor: o.MaxRetainFor}
}

// config is the collector's configuration on node (driver: the CSI driver name).
func (o *GCOptions) config(node, driver string) gc.Config {
	return gc.Config{Node: node, DriverName: driver, Interval: o.Interval, DryRun: o.DryRun,
		HighWatermark: o.HighWatermark, LowWatermark: o.LowWatermark, HardLimit: o.HardLimit,
		DeleteUnarchived: o.DeleteUnarchived, OrphanGrace: o.OrphanPVGrace, Policy: o.policyDefaults()}
}
