package archiver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keeplog/keeplog/pkg/api"
)

// A full archive server, against a real OpenSSH sshd whose upload directory is a small tmpfs.

// A server without room for a dump refuses it before a byte is sent, says "full" in the retry's Event, and the
// retry goes once there is room.
func TestFullServerRefusedBeforeSending(t *testing.T) {
	e := newEnv(t)
	archive := e.smallArchiveFS(4)
	pod := e.pod("ns", "big")
	sum := writeRandom(t, filepath.Join(e.root, pod, "app", "java_pid1.hprof"), 6<<20, 2)
	r := e.start(e.config(), Deps{})
	waitFor(t, time.Minute, "a retry Event", func() bool { return r.rec.count(api.ReasonArchiveRetrying) > 0 })
	if ev := r.rec.all(); !strings.Contains(strings.Join(ev, "\n"), "archive server full") {
		t.Fatalf("the retry does not say the server is full: %v", ev)
	}
	if used := usedBytes(t, archive); used > 64<<10 {
		t.Fatalf("%d bytes used on the full server: the dump was sent although it cannot fit", used)
	}
	remount(t, archive, 16)
	dst := e.archived(pod, "app/java_pid1.hprof")
	waitFor(t, time.Minute, "the dump archived once there is room", func() bool { return exists(dst+manifestSuffix) && exists(dst) })
	if got := fileSHA(t, dst); got != sum {
		t.Fatalf("server copy sha256 %s, want %s", got, sum)
	}
}

// A server that fills up during an upload: the write fails with OpenSSH's bare SSH_FX_FAILURE; the error says the
// server is full, the partial file is gone before the retry (it would keep the server full), and the retry goes
// once space is freed.
func TestServerFullDuringUploadLeavesNoPartialFile(t *testing.T) {
	e := newEnv(t)
	archive := e.smallArchiveFS(4)
	pod := e.pod("ns", "filled")
	sum := writeRandom(t, filepath.Join(e.root, pod, "app", "java_pid1.hprof"), 3<<20, 3)
	cfg := e.config()
	cfg.BytesPerSecond = 1 << 20
	r := e.start(cfg, Deps{})
	waitFor(t, time.Minute, "the upload under way", func() bool { return e.serverFileWith(api.TempFileMarker) != "" })
	filler := filepath.Join(archive, "filler")
	fill(t, filler)
	waitFor(t, time.Minute, "a retry Event", func() bool { return r.rec.count(api.ReasonArchiveRetrying) > 0 })
	if f := e.serverFileWith(api.TempFileMarker); f != "" {
		t.Errorf("the failed attempt left its partial file on the full server: %s", f)
	}
	if ev := r.rec.all(); !strings.Contains(strings.Join(ev, "\n"), "archive server full") {
		t.Fatalf("the retry does not say the server is full: %v", ev)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	dst := e.archived(pod, "app/java_pid1.hprof")
	waitFor(t, time.Minute, "the dump archived once space is freed", func() bool { return exists(dst+manifestSuffix) && exists(dst) })
	if got := fileSHA(t, dst); got != sum {
		t.Fatalf("server copy sha256 %s, want %s", got, sum)
	}
}

// smallArchiveFS mounts a tmpfs of mib MiB where the archive lands on the server (the target's base directory,
// inside sshd's chroot), owned by the SFTP user; it is unmounted when the test ends.
func (e *env) smallArchiveFS(mib int) string {
	t := e.t
	dir := e.serverPath(e.target().BaseDir)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(e.srv.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	opts := fmt.Sprintf("size=%dm,mode=0755,uid=%d,gid=%d", mib, sys.Uid, sys.Gid)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "keeplog-test", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func remount(t testing.TB, dir string, mib int) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", fmt.Sprintf("remount,size=%dm", mib), dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s: %v: %s", dir, err, out)
	}
}

func usedBytes(t testing.TB, dir string) uint64 {
	t.Helper()
	var s syscall.Statfs_t
	if err := syscall.Statfs(dir, &s); err != nil {
		t.Fatal(err)
	}
	return (s.Blocks - s.Bfree) * uint64(s.Bsize)
}

// fill writes p until its filesystem is full.
func fill(t testing.TB, p string) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}
