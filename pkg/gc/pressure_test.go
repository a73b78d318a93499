package gc

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// pressureFixture: six directories of one volume with a long retention, d[0] unpublished first; d[1] and d[3] have
// archive work pending; d[5] stays published. The fake disk is 40% plus 10% per pod directory on disk, so 100% now.
func pressureFixture(t *testing.T) (*fixture, []string) {
	f := newFixture(t)
	f.volume("v1:node-a:pvc-1", store.Persistent, "pvc-1", map[string]string{api.ParamRetainFor: "1000h"})
	var dirs []string
	for i := range 6 {
		d, target := f.podDir("v1:node-a:pvc-1", 10)
		dirs = append(dirs, d)
		if i < 5 {
			f.clk.Step(time.Minute)
			f.unpublish("v1:node-a:pvc-1", target)
		}
	}
	f.archive.set(dirs[1], true)
	f.archive.set(dirs[3], true)
	f.disk = func() (DiskUsage, error) {
		entries, err := os.ReadDir(f.root)
		if err != nil {
			return DiskUsage{}, err
		}
		used := int64(40)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "ns_") {
				used += 10
			}
		}
		return DiskUsage{Size: 100, Used: used, Avail: 100 - used}, nil
	}
	f.clk.Step(time.Hour)
	return f, dirs
}

func TestDiskPressureOldestArchivedFirstUntilLowWatermark(t *testing.T) {
	f, d := pressureFixture(t)
	f.cfg.LowWatermark = 75
	res := f.pass(f.gc())
	if got, want := deletedDirs(res), []string{d[0], d[2], d[4]}; !slices.Equal(got, want) {
		t.Fatalf("deleted %v, want %v (archived ones, oldest first, until below 75%%)", got, want)
	}
	for _, dl := range res.Deleted {
		if dl.Cause != CauseDiskPressure {
			t.Fatalf("cause %q", dl.Cause)
		}
	}
	if res.UsedPercent != 70 {
		t.Fatalf("used after the pass %v%%, want 70", res.UsedPercent)
	}
	for _, i := range []int{1, 3, 5} {
		f.wantExists(d[i], true, "archive pending or published, no --gc-delete-unarchived")
	}
	ev := f.events.all()
	if len(ev) != 3 || ev[0].typ != "Warning" || !strings.Contains(ev[0].msg, "disk pressure above 90%") {
		t.Fatalf("events %+v", ev)
	}
	// Between the watermarks: nothing more.
	if res := f.pass(f.gc()); len(res.Deleted) != 0 {
		t.Fatalf("below the high watermark, deleted %v", res.Deleted)
	}
}

func TestDiskPressureUnarchivedOnlyWhenAllowed(t *testing.T) {
	f, d := pressureFixture(t)
	f.cfg.LowWatermark = 45
	f.cfg.DeleteUnarchived = true
	res := f.pass(f.gc())
	if got, want := deletedDirs(res), []string{d[0], d[2], d[4], d[1], d[3]}; !slices.Equal(got, want) {
		t.Fatalf("deleted %v, want %v (archived first, then un-archived, each oldest first)", got, want)
	}
	f.wantExists(d[5], true, "published, even at 50% above a 45% low watermark")
	var unarchived int
	for _, e := range f.events.all() {
		if strings.Contains(e.msg, "had NOT finished") {
			unarchived++
		}
	}
	if unarchived != 2 {
		t.Fatalf("events %+v: want 2 saying the archiver had not finished", f.events.all())
	}
}

func TestAdmitVolume(t *testing.T) {
	f := newFixture(t)
	g := f.gc()
	for _, c := range []struct {
		used, inodesUsed int64
		err              error
		want             []string // in the refusal; none: admitted
	}{
		{used: 949, inodesUsed: 949},
		{used: 950, inodesUsed: 100, want: []string{f.root, "95.0% of its space is used", "hard limit of 95% (--disk-hard-limit)"}},
		{used: 1000, inodesUsed: 100, want: []string{"100.0% of its space"}},
		{used: 100, inodesUsed: 950, want: []string{f.root, "95.0% of its inodes are used (950 of 1000)", "hard limit of 95% (--disk-inode-hard-limit)"}},
		{used: 960, inodesUsed: 990, want: []string{"96.0% of its space", "99.0% of its inodes"}},
		{used: 1000, inodesUsed: 1000, err: errors.New("statfs: broken")},
	} {
		f.disk = func() (DiskUsage, error) {
			return DiskUsage{Size: 1000, Used: c.used, Avail: 1000 - c.used, Inodes: 1000, InodesFree: 1000 - c.inodesUsed}, c.err
		}
		err := g.AdmitVolume()
		if (err != nil) != (len(c.want) > 0) {
			t.Fatalf("used %d/1000, inodes %d/1000 (statfs error %v): AdmitVolume = %v, want refused=%v", c.used, c.inodesUsed, c.err, err, len(c.want) > 0)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("refusal %q does not say %q", err, w)
			}
		}
	}
}

// TestInodePressureDeletesLikeBytePressure: with plenty of space but inodes past their high watermark, a pass
// deletes in the same order as for bytes (archived first, oldest first) until inodes are below their low
// watermark, with its own cause; bytes past theirs at the same time keep the disk_pressure cause.
func TestInodePressureDeletesLikeBytePressure(t *testing.T) {
	f, d := pressureFixture(t)
	bytesFull := f.disk
	f.disk = func() (DiskUsage, error) { // 10% of the space, and 40% + 10% per pod directory of the inodes
		u, err := bytesFull()
		return DiskUsage{Size: 100, Used: 10, Avail: 90, Inodes: 100, InodesFree: 100 - u.Used}, err
	}
	f.cfg.InodeLowWatermark = 75
	res := f.pass(f.gc())
	if got, want := deletedDirs(res), []string{d[0], d[2], d[4]}; !slices.Equal(got, want) {
		t.Fatalf("deleted %v, want %v (archived ones, oldest first, until below 75%% of inodes)", got, want)
	}
	for _, dl := range res.Deleted {
		if dl.Cause != CauseInodePressure {
			t.Fatalf("cause %q, want %s", dl.Cause, CauseInodePressure)
		}
	}
	if res.InodesUsedPercent != 70 || res.UsedPercent != 10 {
		t.Fatalf("after the pass %v%% of inodes, %v%% of space used; want 70, 10", res.InodesUsedPercent, res.UsedPercent)
	}
	if ev := f.events.all(); len(ev) != 3 || !strings.Contains(ev[0].msg, "inode pressure above 90%") {
		t.Fatalf("events %+v", ev)
	}
}

func TestDiskUsagePercentLikeDf(t *testing.T) {
	// 1000 blocks, 100 free of which 50 reserved for root: df says 900/(900+50).
	u := DiskUsage{Size: 1000, Used: 900, Avail: 50}
	if p := u.Percent(); p < 94.7 || p > 94.8 {
		t.Fatalf("Percent %v", p)
	}
	if (DiskUsage{}).Percent() != 0 {
		t.Fatal("empty filesystem")
	}
}
