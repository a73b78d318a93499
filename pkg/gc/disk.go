package gc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/keeplog/keeplog/internal/units"
)

// DiskUsage is the root filesystem's space, as df shows it.
type DiskUsage struct {
	Size  int64 // total bytes
	Used  int64 // bytes in use (total - free)
	Avail int64 // bytes an unprivileged writer may still use
}

// Percent is the share in use as df computes it: used / (used + avail), so blocks reserved for root count as full.
func (u DiskUsage) Percent() float64 {
	if u.Used+u.Avail <= 0 {
		return 0
	}
	return float64(u.Used) * 100 / float64(u.Used+u.Avail)
}

// Statfs reads a filesystem's usage with statfs(2).
func Statfs(path string) (DiskUsage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return DiskUsage{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := int64(st.Bsize)
	return DiskUsage{Size: int64(st.Blocks) * bs, Used: int64(st.Blocks-st.Bfree) * bs, Avail: int64(st.Bavail) * bs}, nil
}

// AdmitVolume refuses a new volume while the root's filesystem is at or past the hard limit (the driver answers
// ResourceExhausted with this message). When the filesystem cannot be read the volume is admitted: a failed
// measurement must not stop every pod on the node.
func (g *GC) AdmitVolume() error {
	root := g.store.Root()
	u, err := g.statfs(root)
	if err != nil {
		klog.ErrorS(err, "Cannot read the root's filesystem usage; admitting the new volume")
		return nil
	}
	if p := u.Percent(); p >= g.cfg.HardLimit {
		return fmt.Errorf("keeplog root %s is %.1f%% full (%s used, %s available), at or past the hard limit of %g%% (--disk-hard-limit): no new volumes until garbage collection frees space",
			root, p, units.Bytes(u.Used), units.Bytes(u.Avail), g.cfg.HardLimit)
	}
	return nil
}

// relieve deletes unpublished directories before their time while the root's filesystem is above the high
// watermark, until it is below the low one: those the archiver is done with first, each group oldest first; those
// it still has work for only with DeleteUnarchived.
func (g *GC) relieve(inv *inventory, now time.Time, res *Result) error {
	root := g.store.Root()
	u, err := g.statfs(root)
	if err != nil {
		return fmt.Errorf("gc: disk pressure check: %w", err)
	}
	used := u.Percent()
	res.UsedPercent = used
	if used < g.cfg.HighWatermark {
		return nil
	}
	var cands []*candidate
	held := 0
	for _, c := range inv.candidates {
		switch {
		case c.gone:
		case c.isPending() && !g.cfg.DeleteUnarchived:
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
	klog.InfoS("Disk pressure: deleting pod directories before their retention ends", "root", root,
		"usedPercent", fmt.Sprintf("%.1f", used), "highWatermark", g.cfg.HighWatermark, "lowWatermark", g.cfg.LowWatermark,
		"candidates", len(cands), "heldForArchive", held, "published", inv.published)
	var errs []error
	for _, c := range cands {
		if used < g.cfg.LowWatermark {
			break
		}
		var size int64
		if g.cfg.DryRun {
			size = dirSize(filepath.Join(root, c.dir))
		}
		if err := g.delete(c, CauseDiskPressure, now, res); err != nil {
			errs = append(errs, err)
			continue
		}
		if g.cfg.DryRun {
			u.Used, u.Avail = u.Used-size, u.Avail+size
		} else if u, err = g.measureAfterDelete(root, u); err != nil {
			return errors.Join(append(errs, err)...)
		}
		used = u.Percent()
	}
	res.UsedPercent = used
	if used >= g.cfg.LowWatermark {
		klog.InfoS("WARNING: still above the low watermark after deleting every eligible pod directory",
			"root", root, "usedPercent", fmt.Sprintf("%.1f", used), "lowWatermark", g.cfg.LowWatermark,
			"published", inv.published, "heldForArchive", held)
	}
	return errors.Join(errs...)
}

// measureAfterDelete reads the filesystem again. Some filesystems (ext4) count freed blocks only when the journal
// commits; when nothing seems freed, it syncs the filesystem once and reads again.
func (g *GC) measureAfterDelete(root string, before DiskUsage) (DiskUsage, error) {
	u, err := g.statfs(root)
	if err != nil || u.Used < before.Used {
		return u, err
	}
	if err := syncfs(root); err != nil {
		klog.V(2).InfoS("syncfs failed", "root", root, "error", err)
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

// dirSize is the bytes allocated below path (st_blocks, as du counts), without following symlinks.
func dirSize(path string) int64 {
	var n int64
	_ = filepath.WalkDir(path, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil // vanished or unreadable: count what can be read
		}
		if fi, err := e.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}
