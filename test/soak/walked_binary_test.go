//go:build soak

package soak

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/fstest"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/test/binary"
)

// TestBinaryWalkedMarks is the archiver's walked marks (pkg/archiver walked.go) through the shipped binary: a
// retained pod directory walked with nothing to do gets its mark, and a restarted keeplog does not walk it at once
// (it says so) — yet a dump dropped into it while keeplog was down is archived, with the right sha256, before the
// garbage collector deletes the directory: its Archived check walks the directory afresh, finds the dump, and has
// it uploaded first. The mark goes with that walk. A mark on a directory still published (left by a crash between
// its mount and MarkPublished) is dropped at the restart, and the directory is watched.
func TestBinaryWalkedMarks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("must run as root (keeplog bind-mounts)")
	}
	ctx := context.Background()
	e := newArchEnv(t, ctx, "--retain-for=45s", "--gc-interval=1s")
	pod := binary.NewPod("walked", "quiet")
	vol := binary.EphemeralVolumeID(pod, "logs")
	target := filepath.Join(e.work, "targets", pod.UID, "mount")
	if err := e.csi.Publish(ctx, vol, target, pod, true, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := binary.WriteFile(filepath.Join(target, "app", "gc.log"), 4096, 1); err != nil { // matches no pattern
		t.Fatal(err)
	}
	if err := binary.Retry(ctx, time.Minute, func(ctx context.Context) error { return e.csi.Unpublish(ctx, vol, target) }); err != nil {
		t.Fatal(err)
	}
	// Restarted, keeplog takes the directory for a retained one from its record (not unpublished recently in this
	// process's life) and its first rescan walks it and finds nothing to do.
	if err := e.kl.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := e.kl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	mark := filepath.Join(e.kl.Root, api.KeeplogDir, api.ArchiveJournalDir, api.ArchiveWalkedDir, pod.DirName())
	waitPath(t, e.kl, mark, true, time.Minute)

	// A second pod stays published, and while keeplog is down it gets a mark by hand: what a crash between its
	// mount and MarkPublished would leave. Reconcile must drop it before the archiver runs, so that the restarted
	// keeplog watches the directory instead of taking it for a retained one.
	live := binary.NewPod("walked", "live")
	liveTarget := filepath.Join(e.work, "targets", live.UID, "mount")
	if err := e.csi.Publish(ctx, binary.EphemeralVolumeID(live, "logs"), liveTarget, live, true, nil); err != nil {
		t.Fatal(err)
	}
	liveMark := filepath.Join(filepath.Dir(mark), live.DirName())
	if err := e.kl.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(liveMark, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := e.kl.PodDir(pod)
	sum, err := binary.WriteFile(filepath.Join(dir, dumpName(0)), 1<<20, 2) // dropped while keeplog was down
	if err != nil {
		t.Fatal(err)
	}
	if err := e.kl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitLog(t, e.kl, "Retained pod directories walked before the restart are walked again in their next retained rescan", "podDirs", "1", time.Minute)
	waitPath(t, e.kl, liveMark, false, time.Minute)
	waitWatched(t, e.kl, e.kl.PodDir(live), time.Minute)

	waitPath(t, e.kl, dir, false, 2*time.Minute) // expired 45 s after the unpublish; deleted once archived
	inv, err := binary.ReadInventory(e.sftp.Server.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range inv.Files {
		if f.Manifest.Path == dumpName(0) && f.Manifest.UID == pod.UID {
			found = !f.Missing && f.Manifest.SHA256 == sum
		}
	}
	if !found {
		t.Fatalf("the pod directory was deleted, and the dump dropped into it (sha256 %s) is not on the server with that sha256: %+v\n%s",
			sum, inv, e.kl.LogTail(30))
	}
	if _, err := os.Lstat(mark); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the walked mark of a directory walked again for Archived and deleted is still there (%v)", err)
	}
}

// waitPath waits until p exists (or, with exists false, is gone).
func waitPath(t *testing.T, kl *binary.Keeplog, p string, exists bool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, err := os.Lstat(p)
		if (err == nil) == exists {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: exists %v after %s, want %v; keeplog's log:\n%s", p, err == nil, timeout, exists, kl.LogTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitLog waits until keeplog's log has a line with msg and key=value (text) or "key":value (JSON).
func waitLog(t *testing.T, kl *binary.Keeplog, msg, key, value string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(kl.LogPath)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, msg) && (strings.Contains(line, " "+key+"="+value) || strings.Contains(line, `"`+key+`":`+value)) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q with %s=%s after %s; keeplog's log:\n%s", msg, key, value, timeout, kl.LogTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitWatched waits until one of keeplog's inotify watches is on dir (the kernel's list, by device and inode).
func waitWatched(t *testing.T, kl *binary.Keeplog, dir string, timeout time.Duration) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for {
		watched, err := fstest.InotifyWatched(kl.Pid())
		if err == nil && watched[fstest.Watched{Dev: uint64(st.Dev), Ino: st.Ino}] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not watched by keeplog after %s (%v); its log:\n%s", dir, timeout, err, kl.LogTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
