package main

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/keeplog/keeplog/pkg/gc"
	"github.com/keeplog/keeplog/pkg/policy"
)

// Disk watermarks by default, in percent in use. kubelet's defaults act on its root dir's filesystem (nodefs) and
// the runtime's (imagefs): image garbage collection from 85% in use, hard eviction at nodefs.available<10% (90%) and
// nodefs.inodesFree<5% (95% of inodes). When keeplog's root shares one of those filesystems, keeplog's defaults stay
// below them, so that keeplog deletes the logs it keeps before kubelet evicts pods or deletes images (neither of
// which frees keeplog's data); on a filesystem of its own, keeplog may use it further. A flag set explicitly wins.
// Inodes take the same defaults.
func defaultWatermarks(shared bool) watermarks {
	if shared {
		return watermarks{high: 80, low: 70, hard: 85}
	}
	return watermarks{high: 90, low: 80, hard: 95}
}

type watermarks struct{ high, low, hard float64 }

// GCOptions configure retention and garbage collection (pkg/gc).
type GCOptions struct {
	RetainFor        time.Duration
	MaxRetainFor     time.Duration
	Interval         time.Duration
	DryRun           bool
	HighWatermark    percent
	LowWatermark     percent
	HardLimit        percent
	InodeHigh        percent
	InodeLow         percent
	InodeHard        percent
	DeleteUnarchived bool
	OrphanPVGrace    time.Duration
	// KubeletRootDir and RuntimeDir are compared with the root's filesystem (with PodLogsDir of Options); empty: not.
	KubeletRootDir string
	RuntimeDir     string
}

// AddFlags registers the GC flags.
func (o *GCOptions) AddFlags(fs *flag.FlagSet) {
	fs.DurationVar(&o.RetainFor, "retain-for", policy.DefaultRetainFor, "how long a pod directory is kept after its pod's volume is unpublished, unless the StorageClass (retainFor) or the pod (keeplog.csi.io/retain-for) says otherwise")
	fs.DurationVar(&o.MaxRetainFor, "max-retain-for", 30*24*time.Hour, "the longest retention a StorageClass or a pod may ask for")
	fs.DurationVar(&o.Interval, "gc-interval", time.Minute, "how often the garbage collector looks at every pod directory")
	fs.BoolVar(&o.DryRun, "gc-dry-run", false, "log what the garbage collector would delete (directories, records, PVs) and delete nothing")
	fs.Var(&o.HighWatermark, "disk-high-watermark", "percent of the root's filesystem in use above which pod directories are deleted before their retention ends (archived ones first, oldest first); default 80 when the root shares a filesystem with kubelet, its pod logs or the container runtime, else 90")
	fs.Var(&o.LowWatermark, "disk-low-watermark", "percent in use that disk-pressure deletion brings the root's filesystem under; default 70 when shared, else 80")
	fs.Var(&o.HardLimit, "disk-hard-limit", "percent in use at which new volumes are refused (ResourceExhausted); default 85 when shared, else 95")
	fs.Var(&o.InodeHigh, "disk-inode-high-watermark", "percent of the root filesystem's inodes in use above which pod directories are deleted before their retention ends, as for bytes; default 80 when shared, else 90")
	fs.Var(&o.InodeLow, "disk-inode-low-watermark", "percent of inodes in use that inode-pressure deletion brings the root's filesystem under; default 70 when shared, else 80")
	fs.Var(&o.InodeHard, "disk-inode-hard-limit", "percent of inodes in use at which new volumes are refused; default 85 when shared, else 95")
	fs.StringVar(&o.KubeletRootDir, "kubelet-root-dir", "/var/lib/kubelet", "kubelet's --root-dir, to find whether the root shares its filesystem (and so kubelet's eviction thresholds); empty: not checked")
	fs.StringVar(&o.RuntimeDir, "runtime-dir", "/var/lib/containerd", "the container runtime's directory (its images), to find whether the root shares its filesystem (kubelet's image garbage collection); empty: not checked")
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
	for name, p := range map[string]percent{"--disk-high-watermark": o.HighWatermark, "--disk-low-watermark": o.LowWatermark,
		"--disk-hard-limit": o.HardLimit, "--disk-inode-high-watermark": o.InodeHigh, "--disk-inode-low-watermark": o.InodeLow,
		"--disk-inode-hard-limit": o.InodeHard} {
		if p.set && (p.v <= 0 || p.v > 100) {
			errs = append(errs, fmt.Errorf("%s %g must be a percentage in (0, 100]", name, p.v))
		}
	}
	for name, dir := range map[string]string{"--kubelet-root-dir": o.KubeletRootDir, "--runtime-dir": o.RuntimeDir} {
		if dir != "" && !filepath.IsAbs(dir) {
			errs = append(errs, fmt.Errorf("%s %q must be absolute (or empty: not checked)", name, dir))
		}
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

// config is the collector's configuration on node (driver: the CSI driver name); shared says whether the root
// shares its filesystem with kubelet's, its pod logs' or the runtime's, which picks the default watermarks. The
// order of the resolved watermarks is checked here, where defaults and set flags meet.
func (o *GCOptions) config(node, driver string, shared gc.Shared) (gc.Config, error) {
	d := defaultWatermarks(shared.Any())
	c := gc.Config{Node: node, DriverName: driver, Interval: o.Interval, DryRun: o.DryRun,
		HighWatermark: o.HighWatermark.or(d.high), LowWatermark: o.LowWatermark.or(d.low), HardLimit: o.HardLimit.or(d.hard),
		InodeHighWatermark: o.InodeHigh.or(d.high), InodeLowWatermark: o.InodeLow.or(d.low), InodeHardLimit: o.InodeHard.or(d.hard),
		DeleteUnarchived: o.DeleteUnarchived, OrphanGrace: o.OrphanPVGrace, Policy: o.policyDefaults(), SharesFilesystem: shared.With}
	return c, errors.Join(
		orderOf("--disk", o.HighWatermark, o.LowWatermark, o.HardLimit, c.HighWatermark, c.LowWatermark, c.HardLimit),
		orderOf("--disk-inode", o.InodeHigh, o.InodeLow, o.InodeHard, c.InodeHighWatermark, c.InodeLowWatermark, c.InodeHardLimit))
}

// orderOf checks low < high <= hard of one set of resolved watermarks, naming each flag and whether its value
// is a default.
func orderOf(prefix string, high, low, hard percent, h, l, x float64) error {
	name := func(flag string, p percent, v float64) string {
		if p.set {
			return fmt.Sprintf("%s-%s %g", prefix, flag, v)
		}
		return fmt.Sprintf("%s-%s %g (default)", prefix, flag, v)
	}
	var errs []error
	if l >= h {
		errs = append(errs, fmt.Errorf("%s must be below %s", name("low-watermark", low, l), name("high-watermark", high, h)))
	}
	if h > x {
		errs = append(errs, fmt.Errorf("%s must not exceed %s", name("high-watermark", high, h), name("hard-limit", hard, x)))
	}
	return errors.Join(errs...)
}

// percent is a flag's percentage that remembers whether it was set: its default depends on the node (the
// filesystems the root shares), and a set value always wins over it.
type percent struct {
	v   float64
	set bool
}

func (p *percent) String() string {
	if p == nil || !p.set {
		return "auto"
	}
	return strconv.FormatFloat(p.v, 'g', -1, 64)
}

func (p *percent) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("%q is not a number", s)
	}
	p.v, p.set = v, true
	return nil
}

// or is the value when set, else def.
func (p percent) or(def float64) float64 {
	if p.set {
		return p.v
	}
	return def
}
