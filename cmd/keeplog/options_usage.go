package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/keeplog/keeplog/pkg/usage"
)

// Enforcers --usage-enforcer accepts.
const (
	enforcerImmutable = "immutable"
	enforcerNone      = "none"
)

// UsageOptions configure usage accounting and volume limits (pkg/usage).
type UsageOptions struct {
	WalkInterval   time.Duration
	UpdateInterval time.Duration
	WalkRate       int
	Enforcer       string
	BlockGrace     time.Duration
}

// AddFlags registers the usage flags.
func (o *UsageOptions) AddFlags(fs *flag.FlagSet) {
	fs.DurationVar(&o.WalkInterval, "usage-walk-interval", usage.DefaultWalkInterval, "how often every pod directory is walked in full to correct the usage kept from file events")
	fs.DurationVar(&o.UpdateInterval, "usage-update-interval", usage.DefaultUpdateInterval, "how often file events are applied to the usage and volume limits are checked (how fast limitAction block reacts)")
	fs.IntVar(&o.WalkRate, "usage-walk-rate", usage.DefaultWalkRate, "files and directories per second the periodic walk may visit; 0 means unpaced")
	fs.StringVar(&o.Enforcer, "usage-enforcer", enforcerImmutable, "how limitAction block stops a volume from growing: immutable (the immutable attribute on the pod directory's files and directories; ext4, xfs, btrfs) or none (block acts as warn)")
	fs.DurationVar(&o.BlockGrace, "usage-block-grace", usage.DefaultBlockGrace, "how long a new pod directory of a blocked volume stays writable (kubelet applies the pod's fsGroup at mount)")
}

// Validate checks the usage flags.
func (o *UsageOptions) Validate() error {
	var errs []error
	if o.WalkInterval <= 0 {
		errs = append(errs, fmt.Errorf("--usage-walk-interval %s must be positive", o.WalkInterval))
	}
	if o.UpdateInterval <= 0 || o.UpdateInterval > o.WalkInterval {
		errs = append(errs, fmt.Errorf("--usage-update-interval %s must be positive and at most --usage-walk-interval", o.UpdateInterval))
	}
	if o.WalkRate < 0 {
		errs = append(errs, fmt.Errorf("--usage-walk-rate %d must not be negative", o.WalkRate))
	}
	if o.Enforcer != enforcerImmutable && o.Enforcer != enforcerNone {
		errs = append(errs, fmt.Errorf("--usage-enforcer %q must be %s or %s", o.Enforcer, enforcerImmutable, enforcerNone))
	}
	if o.BlockGrace <= 0 {
		errs = append(errs, fmt.Errorf("--usage-block-grace %s must be positive", o.BlockGrace))
	}
	return errors.Join(errs...)
}

// config is the Tracker's configuration from the flags.
func (o *UsageOptions) config() usage.Config {
	rate := o.WalkRate
	if rate == 0 {
		rate = -1 // unpaced
	}
	return usage.Config{UpdateInterval: o.UpdateInterval, WalkInterval: o.WalkInterval, WalkRate: rate, BlockGrace: o.BlockGrace}
}
