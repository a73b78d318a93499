package usage

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/keeplog/keeplog/internal/loopfs"
	"github.com/keeplog/keeplog/pkg/api"
)

func isEPERM(err error) bool { return errors.Is(err, syscall.EPERM) }

// TestAttrEnforcerOnExt4 checks on a real ext4 what the block does: writes through a descriptor opened before fail,
// so do new files and deletions; keeplog's own .keeplog directory stays writable; unblocking undoes it all.
func TestAttrEnforcerOnExt4(t *testing.T) {
	mnt := loopfs.ForTest(t, 16)
	pod := filepath.Join(mnt, "ns_pod_uid")
	writeFile(t, filepath.Join(pod, "app", "app.log"), 100)
	writeFile(t, filepath.Join(pod, ".keeplog", "pod.txt"), 10)
	if err := os.Symlink("/nowhere", filepath.Join(pod, "app", "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(pod, "app", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	open, err := os.OpenFile(filepath.Join(pod, "app", "app.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	e, err := NewAttrEnforcer(filepath.Join(mnt, ".keeplog", "usage", "blocked"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Block(pod); err != nil {
		t.Fatal(err)
	}
	if _, err := open.Write([]byte("more")); !isEPERM(err) {
		t.Errorf("write through a descriptor opened before the block: %v, want EPERM", err)
	}
	if err := os.WriteFile(filepath.Join(pod, "app", "new.log"), []byte("x"), 0o644); !isEPERM(err) {
		t.Errorf("create a file: %v, want EPERM", err)
	}
	if err := os.WriteFile(filepath.Join(pod, "top.log"), []byte("x"), 0o644); !isEPERM(err) {
		t.Errorf("create a file at the top: %v, want EPERM", err)
	}
	if err := os.Remove(filepath.Join(pod, "app", "app.log")); !isEPERM(err) {
		t.Errorf("delete a file: %v, want EPERM", err)
	}
	if err := os.WriteFile(filepath.Join(pod, ".keeplog", "ended.txt"), []byte("x"), 0o644); err != nil {
		t.Errorf("keeplog's own directory must stay writable: %v", err)
	}
	if got, _ := e.Blocked(); !slices.Equal(got, []string{pod}) {
		t.Errorf("Blocked() = %v, want [%s]", got, pod)
	}
	if err := e.Block(pod); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := e.Unblock(pod); err != nil {
		t.Fatal(err)
	}
	if _, err := open.Write([]byte("more")); err != nil {
		t.Errorf("write after unblock: %v", err)
	}
	if err := os.WriteFile(filepath.Join(pod, "app", "new.log"), []byte("x"), 0o644); err != nil {
		t.Errorf("create after unblock: %v", err)
	}
	if got, _ := e.Blocked(); len(got) != 0 {
		t.Errorf("Blocked() after unblock = %v", got)
	}
	for _, p := range []string{pod, filepath.Join(pod, "app"), filepath.Join(pod, "app", "app.log")} {
		if imm, err := IsImmutable(p); err != nil || imm {
			t.Errorf("%s immutable=%v err=%v after unblock", p, imm, err)
		}
	}
}

// writing appends to a file through one descriptor until a write fails or ctx ends; done closes then, err says why.
type writing struct {
	done chan struct{}
	err  error
}

func writer(ctx context.Context, path string, chunk int, every time.Duration) *writing {
	w := &writing{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			w.err = err
			return
		}
		defer f.Close()
		buf := make([]byte, chunk)
		for ctx.Err() == nil {
			if _, err := f.Write(buf); err != nil {
				w.err = err
				return
			}
			time.Sleep(every)
		}
	}()
	return w
}

// TestBlockStopsWriterOnExt4 runs the whole Tracker with the immutable-attribute enforcer on a loop-mounted ext4
// root: a pod directory writing past its limit is stopped within seconds, even through its open descriptor, while
// another volume's pod writes on; once the excess is removed by hand (as an operator would: chattr -i, rm) it can
// write again.
func TestBlockStopsWriterOnExt4(t *testing.T) {
	mnt := loopfs.ForTest(t, 64)
	f := newFixture(t, filepath.Join(mnt, "root"))
	blocked := f.volume("vol-block", 1<<20, map[string]string{"limitAction": "block"}, "p1")[0]
	free := f.volume("vol-free", 0, nil, "q1")[0]
	enf, err := NewAttrEnforcer(filepath.Join(f.st.Root(), ".keeplog", "usage", "blocked"))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Config{UpdateInterval: 100 * time.Millisecond, BlockGrace: time.Millisecond},
		Deps{Store: f.st, Enforcer: enf, Events: f.events})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- tr.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-runDone })

	wctx, stopWriters := context.WithCancel(context.Background())
	freeDone := writer(wctx, filepath.Join(free, "free.log"), 4096, 10*time.Millisecond)
	t.Cleanup(func() { stopWriters(); <-freeDone.done }) // its open file would keep the mount busy
	start := time.Now()
	if err := os.Mkdir(filepath.Join(blocked, "app"), 0o777); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(blocked, "app", "big.log")
	// About 1.6 MB/s: the 4 MiB bound below leaves the Tracker (100 ms updates) seconds of slack on a busy machine.
	blockedDone := writer(wctx, big, 16<<10, 10*time.Millisecond)
	select {
	case <-blockedDone.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the writer past its limit was not stopped within 20 s")
	}
	if !isEPERM(blockedDone.err) {
		t.Fatalf("writer stopped with %v, want EPERM", blockedDone.err)
	}
	t.Logf("writer stopped after %s", time.Since(start).Round(time.Millisecond))
	fi, err := os.Stat(big)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 4<<20 {
		t.Errorf("the blocked file grew to %d bytes: the block came too late", fi.Size())
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case <-freeDone.done:
		t.Fatalf("the other volume's writer stopped: %v", freeDone.err)
	default:
	}
	if reasons := f.events.reasons(); !slices.Contains(reasons, "p1 "+api.ReasonVolumeBlocked) {
		t.Errorf("events %v lack %s", reasons, api.ReasonVolumeBlocked)
	}

	// The operator frees space: clears the attribute of the file and its directory only, and removes the file.
	// The top of the pod directory becomes writable only when the Tracker unblocks it.
	if err := os.WriteFile(filepath.Join(blocked, "after.log"), []byte("x"), 0o644); !isEPERM(err) {
		t.Fatalf("write at the top of a blocked directory: %v, want EPERM", err)
	}
	if out, err := exec.Command("chattr", "-i", filepath.Dir(big), big).CombinedOutput(); err != nil {
		t.Fatalf("chattr: %v: %s", err, out)
	}
	if err := os.Remove(big); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := os.WriteFile(filepath.Join(blocked, "after.log"), []byte("written again\n"), 0o644)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still cannot write 10 s after the excess was removed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if imm, err := IsImmutable(blocked); err != nil || imm {
		t.Errorf("pod directory immutable=%v (%v) after the volume is back under its limit", imm, err)
	}
}
