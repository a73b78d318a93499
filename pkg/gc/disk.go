package gc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/safefs"
	"github.com/keeplog/keeplog/internal/units"
)

// DiskUsage is the root filesystem's space and inodes, as df and df -i show them.
type DiskUsage struct {
	Size  int64 // total bytes
	Used  int64 // bytes in use (total - free)
	Avail int64 // bytes an unprivileged writer may still use
	// Inodes and InodesFree are the filesystem's inodes (statfs f_files, f_ffree); 0 Inodes: it does not count
	// them (btrfs, some FUSE filesystems), and inode watermarks never apply.
	Inodes, InodesFree int64
}

// Percent is the share in use as df computes it: used / (used + avail), so blocks reserved for root count as full.
func (u DiskUsage) Percent() float64 {
	if u.Used+u.Avail <= 0 {
		return 0
	}
	return float64(u.Used) * 100 / float64(u.Used+u.Avail)
}

// InodePercent is the share of inodes in use as df -i computes it (and kubelet's nodefs.inodesFree, inverted).
func (u DiskUsage) InodePercent() float64 {
	if u.Inodes <= 0 {
		return 0
	}
	return float64(u.Inodes-u.InodesFree) * 100 / float64(u.Inodes)
}

// Statfs reads a filesystem's usage with statfs(2).
func Statfs(path string) (DiskUsage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return DiskUsage{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := int64(st.Bsize)
	return DiskUsage{Size: int64(st.Blocks) * bs, Used: int64(st.Blocks-st.Bfree) * bs, Avail: int64(st.Bavail) * bs,
		Inodes: int64(st.Files), InodesFree: int64(st.Ffree)}, nil
}

// AdmitVolume refuses a new volume while the root's filesystem is at or past the hard limit of its bytes or of its
// inodes. The driver answers ResourceExhausted with this message, and csi-provisioner puts it in the claim's
// ProvisioningFailed Event, so it says what is full, by how much, and which flag moves the limit. When the
// filesystem cannot be read the volume is admitted: a failed measurement must not stop every pod on the node.
func (g *GC) AdmitVolume() error {
	root := g.store.Root()
	u, err := g.statfs(root)
	if err != nil {
		g.log.Error(err, "Cannot read the root's filesystem usage; admitting the new volume")
		return nil
	}
	bytes, inodes := u.Percent(), u.InodePercent()
	var full []string
	if bytes >= g.cfg.HardLimit {
		full = append(full, fmt.Sprintf("%.1f%% of its space is used (%s used, %s available), at or past the hard limit of %g%% (--disk-hard-limit)",
			bytes, units.Bytes(u.Used), units.Bytes(u.Avail), g.cfg.HardLimit))
	}
	if u.Inodes > 0 && inodes >= g.cfg.InodeHardLimit {
		full = append(full, fmt.Sprintf("%.1f%% of its inodes are used (%d of %d), at or past the hard limit of %g%% (--disk-inode-hard-limit)",
			inodes, u.Inodes-u.InodesFree, u.Inodes, g.cfg.InodeHardLimit))
	}
	if len(full) == 0 {
		return nil
	}
	return fmt.Errorf("node %s refuses new keeplog volumes: the filesystem of keeplog's root %s is full: %s; garbage collection deletes retained pod directories above %g%% of space (--disk-high-watermark) and %g%% of inodes (--disk-inode-high-watermark), and new volumes are admitted again below the hard limits",
		g.cfg.Node, root, strings.Join(full, "; "), g.cfg.HighWatermark, g.cfg.InodeHighWatermark)
}

// pressure is which of the filesystem's bytes and inodes are past their high watermark, and so must be brought
// below their low one.
type pressure struct{ bytes, inodes bool }

func (g *GC) pressureOf(u DiskUsage) pressure {
	return pressure{bytes: u.Percent() >= g.cfg.HighWatermark,
		inodes: u.Inodes > 0 && u.InodePercent() >= g.cfg.InodeHighWatermark}
}

// relieved reports whether every dimension under pressure is below its low watermark now.
func (g *GC) relieved(p pressure, u DiskUsage) bool {
	return (!p.bytes || u.Percent() < g.cfg.LowWatermark) && (!p.inodes || u.InodePercent() < g.cfg.InodeLowWatermark)
}

// relieve deletes unpublished directories before their time while the root's filesystem is above the high
// watermark of its bytes or of its inodes, until what was above is below its low watermark: those the archiver is
// done with first, each group oldest first; those it still has work for only with DeleteUnarchived.
func (g *GC) relieve(inv *inventory, now time.Time, res *Result) error {
	root := g.store.Root()
	u, err := g.statfs(root)
	if err != nil {
		return fmt.Errorf("gc: disk pressure check: %w", err)
	}
	res.UsedPercent, res.InodesUsedPercent = u.Percent(), u.InodePercent()
	p := g.pressureOf(u)
	if !p.bytes && !p.inodes {
		return nil
	}
	cands, held := pressureCandidates(inv, g.cfg.DeleteUnarchived)
	g.log.Info("Disk pressure: deleting pod directories before their retention ends", "root", root,
		"usedPercent", fmt.Sprintf("%.1f", u.Percent()), "highWatermark", g.cfg.HighWatermark, "lowWatermark", g.cfg.LowWatermark,
		"inodesUsedPercent", fmt.Sprintf("%.1f", u.InodePercent()), "inodeHighWatermark", g.cfg.InodeHighWatermark,
		"inodeLowWatermark", g.cfg.InodeLowWatermark, "candidates", len(cands), "heldForArchive", held, "published", inv.published)
	var errs []error
	for _, c := range cands {
		if g.relieved(p, u) {
			break
		}
		var size, files int64
		if g.cfg.DryRun {
			size, files = dirSize(filepath.Join(root, c.dir))
		}
		if err := g.delete(c, g.pressureCause(p), now, res); err != nil {
			errs = append(errs, err)
			continue
		}
		if g.cfg.DryRun {
			u.Used, u.Avail, u.InodesFree = u.Used-size, u.Avail+size, u.InodesFree+files
		} else if u, err = g.measureAfterDelete(root, u); err != nil {
			return errors.Join(append(errs, err)...)
		}
	}
	res.UsedPercent, res.InodesUsedPercent = u.Percent(), u.InodePercent()
	if !g.relieved(p, u) {
		g.log.Info("WARNING: still above the low watermark after deleting every eligible pod directory",
			"root", root, "usedPercent", fmt.Sprintf("%.1f", u.Percent()), "lowWatermark", g.cfg.LowWatermark,
			"inodesUsedPercent", fmt.Sprintf("%.1f", u.InodePercent()), "inodeLowWatermark", g.cfg.InodeLowWatermark,
			"published", inv.published, "heldForArchive", held)
	}
	return errors.Join(errs...)
}

// pressureCandidates are the directories disk pressure may delete, in order: those the archiver is done with first,
// each group oldest first; held counts those kept for the archiver.
func pressureCandidates(inv *inventory, deleteUnarchived bool) (cands []*candidate, held int) {
	for _, c := range inv.candidates {
		switch {
		case c.gone:
		case c.isPending() && !deleteUnarchived:
			held++
		default:
			cands = append(cands, c)
		}
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.isPending() != b.isPending() {
			return !a.isPending()
		}
		if !a.start.Equal(b.start) {
			return a.start.Before(b.start)
		}
		return a.dir < b.dir
	})
	return cands, held
}

// pressureCause is the deletion cause (the metric's label) for what is under pressure: bytes win when both are.
func (g *GC) pressureCause(p pressure) string {
	if p.bytes {
		return CauseDiskPressure
	}
	return CauseInodePressure
}

// measureAfterDelete reads the filesystem again. Some filesystems (ext4) count freed blocks only when the journal
// commits; when nothing seems freed, it syncs the filesystem once and reads again.
func (g *GC) measureAfterDelete(root string, before DiskUsage) (DiskUsage, error) {
	u, err := g.statfs(root)
	if err != nil || u.Used < before.Used || u.InodesFree > before.InodesFree {
		return u, err
	}
	if err := syncfs(root); err != nil {
		g.log.V(2).Info("syncfs failed", "root", root, "error", err)
	}
	return g.statfs(root)
}

func syncfs(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// dirSize is the bytes allocated at and below path (st_blocks, as du counts: a hard-linked file once) and the
// entries there. The pod wrote
// this tree, so it is walked with safefs.Walk: no symlink followed, nothing but directories opened, and no other
// mount entered (a bind mount inside a pod directory is not the pod directory's: counting it made its retained size,
// and a dry run's estimate of what deleting it frees, wrong).
func dirSize(path string) (bytes, entries int64) {
	parent, err := safefs.OpenDir(filepath.Dir(path)) // keeplog's root: trusted
	if err != nil {
		return 0, 0
	}
	defer parent.Close()
	top, err := safefs.OpenDirAt(parent, filepath.Base(path), false)
	if err != nil {
		return 0, 0 // vanished, or not a directory
	}
	defer top.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(top.Fd()), &st); err == nil {
		bytes, entries = st.Blocks*512, 1
	}
	linked := map[[2]uint64]bool{} // a file with more than one link is counted once, as du and the usage tracker count it
	_, _ = safefs.Walk(top, "", func(e safefs.Entry) bool {
		entries++
		if e.Stat.Nlink > 1 && e.Kind() != unix.S_IFDIR {
			id := [2]uint64{e.Stat.Dev, e.Stat.Ino}
			if linked[id] {
				return true
			}
			linked[id] = true
		}
		bytes += e.Stat.Blocks * 512
		return true
	})
	return bytes, entries
}
