//go:build soak

package soak

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	kbin "github.com/keeplog/keeplog/test/binary"
	"github.com/keeplog/keeplog/test/e2e/lab"
)

// A directory bind-mounted inside a pod directory belongs to someone else: when the pod directory's retention
// expires the garbage collector must keep the directory (and report why) instead of deleting around or through the
// mount, and the archiver must not walk into it. The soak mounts an outside directory holding files that match
// the archive patterns into two unpublished pods' directories and checks at the end that each directory is still
// there, still mounted, reported in keeplog's log, and that the outside directory is the same byte for byte. One
// pod is archived (its dump is uploaded; the archiver reports the mount point and, since the directory cannot be
// walked whole, keeps it pending, so the GC keeps it); the other has archiving off, so nothing is pending and the
// GC's own deletion (store.DeletePodDir) meets the mount and must refuse it.

// mountPod is one such pod.
type mountPod struct {
	archived   bool
	p          *podRun
	outside    string
	mountPoint string
	files      map[string]string // the outside directory's files and their sha256, by path inside it
}

// outsideFiles lists dir's regular files with their sha256 (and every other entry with its mode).
func outsideFiles(dir string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if !d.Type().IsRegular() {
			out[rel] = d.Type().String()
			return nil
		}
		out[rel], err = kbin.FileSHA256(p)
		return err
	})
	return out, err
}

// holdMounts makes the two pods.
func (s *soakEnv) holdMounts(ctx context.Context) error {
	for i, archived := range []bool{true, false} {
		if err := s.holdMount(ctx, i, archived); err != nil {
			return err
		}
	}
	return nil
}

// holdMount publishes a pod, writes a dump (when archived), unpublishes it and then bind-mounts an outside
// directory (dumps and a log file in it) onto <pod dir>/app/mnt, before its retention expires. The mount is
// undone by a cleanup that runs before the work directory's own, also after a failure.
func (s *soakEnv) holdMount(ctx context.Context, i int, archived bool) error {
	m := &mountPod{archived: archived, outside: filepath.Join(s.work, fmt.Sprintf("outside-mount-%d", i))}
	rng := newRand(31337 + uint64(i))
	for i, rel := range []string{"keep.hprof", "core", "sub/java_pid7.hprof", "sub/notes.log"} {
		if _, err := kbin.WriteFile(filepath.Join(m.outside, rel), logUniform(rng, 1<<10, 256<<10), uint64(9000+i)); err != nil {
			return err
		}
	}
	var err error
	if m.files, err = outsideFiles(m.outside); err != nil {
		return err
	}
	var extra map[string]string
	if !archived {
		extra = map[string]string{"archive": "false"}
	}
	if m.p, err = s.load.newPodWith(ctx, rng, false, extra); err != nil {
		return err
	}
	m.p.holdsMount = true
	if archived {
		if err := s.load.writeDump(rng, m.p, 0, 3); err != nil {
			return err
		}
	}
	if err := s.load.unpublish(ctx, m.p); err != nil {
		return err
	}
	m.mountPoint = filepath.Join(s.kl.PodDir(m.p.pod), "app", "mnt")
	if err := os.MkdirAll(m.mountPoint, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(m.outside, m.mountPoint, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount %s on %s: %w", m.outside, m.mountPoint, err)
	}
	s.t.Cleanup(m.unmount)
	s.mounted = append(s.mounted, m)
	s.t.Logf("bind-mounted %s on %s (archived: %v; retention %s from %s)", m.outside, m.mountPoint, archived,
		s.plan.retainFor, m.p.unpublishedAt.Format("15:04:05"))
	return nil
}

func (m *mountPod) unmount() {
	if mounted, _ := lab.MountsUnder(m.mountPoint); len(mounted) == 0 {
		return
	}
	if err := unix.Unmount(m.mountPoint, 0); err != nil {
		_ = unix.Unmount(m.mountPoint, unix.MNT_DETACH)
	}
}

func (s *soakEnv) mountVerdicts(logged []byte) []verdict {
	if len(s.mounted) != 2 {
		return []verdict{{name: "expired pod directories holding a bind mount", figure: fmt.Sprintf("%d mounts made, want 2", len(s.mounted))}}
	}
	var out []verdict
	for _, m := range s.mounted {
		out = append(out, m.verdict(s, logged))
	}
	return out
}

// verdict checks the pod directory, the mount, keeplog's report (the archiver's for an archived pod, the GC's for
// one not archived) and the outside directory. The mount stays until the cleanup: unmounted, the directory would
// be deleted by the GC within a pass, while the run's figures are still being gathered.
func (m *mountPod) verdict(s *soakEnv, logged []byte) verdict {
	v := verdict{name: "expired pod directory holding a bind mount (archived): kept, reported, outside intact"}
	if !m.archived {
		v.name = "… the same, archiving off (the GC's deletion meets the mount)"
	}
	expired := time.Since(m.p.unpublishedAt) - s.plan.retainFor
	_, dirErr := os.Lstat(s.kl.PodDir(m.p.pod))
	mounted, _ := lab.MountsUnder(m.mountPoint)
	now, err := outsideFiles(m.outside)
	same := err == nil && mapsEqual(now, m.files)
	var byArchiver, byGC int // the archiver reports the mount point it does not enter, the GC a refused deletion
	for _, line := range bytes.Split(logged, []byte("\n")) {
		l := string(line)
		switch {
		case !strings.Contains(l, m.p.pod.UID):
		case strings.Contains(l, "mount point"):
			byArchiver++
		case strings.Contains(l, "mounted inside"):
			byGC++
		}
	}
	reported := byArchiver > 0
	if !m.archived {
		reported = byGC > 0
	}
	v.ok = expired > 0 && dirErr == nil && len(mounted) == 1 && same && reported
	v.figure = fmt.Sprintf("expired %s ago; directory there: %v; still mounted: %v; reported in %d archiver and %d GC log lines; outside's %d entries identical: %v",
		expired.Round(time.Second), dirErr == nil, len(mounted) == 1, byArchiver, byGC, len(m.files), same)
	if !same {
		v.detail = diffFiles(m.files, now, err)
	}
	return v
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func diffFiles(want, got map[string]string, err error) []string {
	var out []string
	if err != nil {
		out = append(out, "walk: "+err.Error())
	}
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if want[k] != got[k] {
			out = append(out, fmt.Sprintf("%s: want %.12q, have %.12q", k, want[k], got[k]))
		}
	}
	return slices.Clip(out)
}
