package archiver

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/fstest"
	"github.com/keeplog/keeplog/pkg/api"
)

// TestTrashRenamesDoNotWedgeTheWatcher is the GC's own churn: pod directories (with watched sub-directories) renamed
// into the trash and removed while new ones appear. fsnotify sends an error while holding the mutex that Add needs;
// an archiver loop that both adds watches and is the only reader of Errors deadlocked within seconds, and a dump
// written afterwards was never seen. Rescans are off, so only events can find the dump.
func TestTrashRenamesDoNotWedgeTheWatcher(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.RescanInterval = time.Hour
	e.start(cfg, Deps{})
	churn := 15 * time.Second
	if testing.Short() {
		churn = 5 * time.Second
	}
	// Pod directories appear (the archiver adds watches for them and their sub-directories) and each is moved into
	// the trash once the archiver had time to watch it, and removed, as the GC does.
	n := fstest.TrashChurn(t, filepath.Join(e.root, ".keeplog", "trash"), churn, func(i int) (string, error) {
		pod := filepath.Join(e.root, e.pod("churn", fmt.Sprintf("p%d", i)))
		for _, sub := range []string{"app/a/b", "app/c", "side/d/e"} {
			if err := os.MkdirAll(filepath.Join(pod, sub), 0o755); err != nil {
				return "", err
			}
		}
		return pod, nil
	})
	t.Logf("%d pod directories renamed into the trash and removed", n)
	pod := e.pod("ns", "after")
	writeRandom(t, filepath.Join(e.root, pod, "app", "heap.hprof"), 4096, 1)
	waitFor(t, 30*time.Second, "the dump written after the churn to be archived", func() bool {
		return exists(e.archived(pod, "app/heap.hprof"))
	})
}

// TestIdleArchiverWritesNoStatus: once a dump is archived, nothing is rewritten. The status file used to live in
// the watched pod directory: each rewrite's vanished temporary name marked the pod dirty again and the status was
// rewritten 50–400 times a second. Files the application makes and removes that match no pattern are no work either.
func TestIdleArchiverWritesNoStatus(t *testing.T) {
	e := newEnv(t)
	r := e.start(e.config(), Deps{})
	pod := e.pod("ns", "idle")
	writeRandom(t, filepath.Join(e.root, pod, "app", "heap.hprof"), 64<<10, 3)
	waitFor(t, 30*time.Second, "the dump to be archived", func() bool {
		fs := statusOf(readStatus(t, e.root, pod), "app/heap.hprof")
		return len(fs) == 1 && fs[0].State == string(StateDone)
	})
	time.Sleep(time.Second) // let the last status write of the upload happen
	status := filepath.Join(e.root, pod, api.ArchiveStatusPath)
	inode := func() uint64 {
		var st unix.Stat_t
		if err := unix.Lstat(status, &st); err != nil {
			t.Fatalf("status file: %v", err)
		}
		return st.Ino
	}
	before, writes := inode(), counter(t, r.reg, "keeplog_archive_status_writes_total")
	rewrites := 0
	for i := 0; i < 30; i++ {
		// The application rotates a log through a temporary name.
		tmp := filepath.Join(e.root, pod, "app", fmt.Sprintf(".gc.log.%d.tmp", i))
		if err := os.WriteFile(tmp, []byte("line\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(e.root, pod, "app", "gc.log")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		if ino := inode(); ino != before {
			rewrites++
			before = ino
		}
	}
	if got := counter(t, r.reg, "keeplog_archive_status_writes_total") - writes; rewrites != 0 || got != 0 {
		t.Fatalf("while idle the status file was replaced %d times (%v counted writes); want 0", rewrites, got)
	}
}

// counter reads a counter (or gauge) without labels from a registry.
func counter(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// TestMountInsidePodDirectoryIsReportedAndBlocksArchived: the archiver never walks into another mount inside a pod
// directory; it says so once (Event, metric, status file) and the directory is never archived, so the GC keeps it.
func TestMountInsidePodDirectoryIsReportedAndBlocksArchived(t *testing.T) {
	e := newEnv(t)
	pod := e.pod("ns", "mnt")
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "other.hprof"), []byte("not the pod's"), 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(e.root, pod, "app", "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	fstest.BindMount(t, outside, mnt)
	writeRandom(t, filepath.Join(e.root, pod, "app", "own.hprof"), 4096, 5)
	r := e.start(e.config(), Deps{})
	waitFor(t, 30*time.Second, "the pod's own dump to be archived", func() bool { return exists(e.archived(pod, "app/own.hprof")) })
	waitFor(t, 10*time.Second, "the mount to be reported", func() bool { return r.rec.count(api.ReasonArchiveRejected) == 1 })
	ok, why := r.a.Archived(pod)
	if ok || !strings.Contains(why, "app/mnt is a mount point") {
		t.Fatalf("Archived = %v (%q), want false naming the mount", ok, why)
	}
	if fs := statusOf(readStatus(t, e.root, pod), "app/mnt"); len(fs) != 1 || fs[0].State != StatusRejected {
		t.Fatalf("status of app/mnt: %+v", fs)
	}
	if got := counterVec(t, r.reg, "keeplog_archiver_unwalked_directories_total", UnwalkedMount); got != 1 {
		t.Fatalf("unwalked mounts counted %v, want 1", got)
	}
	time.Sleep(2 * cfgRescan(e)) // two more rescans: still one Event, and nothing of the mount uploaded
	if n := r.rec.count(api.ReasonArchiveRejected); n != 1 {
		t.Fatalf("%d ArchiveRejected events, want 1", n)
	}
	for _, f := range e.serverFiles() {
		if strings.Contains(f, "other.hprof") {
			t.Fatalf("a file on the mount was uploaded: %s", f)
		}
	}
}

func cfgRescan(e *env) time.Duration { return e.config().RescanInterval }

// counterVec reads one labelled series of a counter from a registry.
func counterVec(t testing.TB, g prometheus.Gatherer, name, label string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("metric %s{%s} not found", name, label)
	return 0
}
