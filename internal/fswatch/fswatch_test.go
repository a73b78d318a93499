package fswatch

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/utils/clock"
)

// TestAddNeverWaitsForTheConsumer: the consumer takes nothing while directories it watches are renamed away and
// removed (fsnotify then sends errors while holding its mutex) and new ones are added. Every Add returns. With a bare
// fsnotify watcher whose Events are read but whose Errors are not (the consumer is busy adding), the same loop
// hangs in Add within seconds (checked by hand: the test binary had to be killed). This watcher reads inotify itself
// and Add is a system call under a mutex the reader holds only while it parses.
func TestAddNeverWaitsForTheConsumer(t *testing.T) {
	w, err := New(clock.RealClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	root, trash := t.TempDir(), t.TempDir()
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		dir := filepath.Join(root, fmt.Sprintf("d%d", i))
		for _, sub := range []string{"", "a", "a/b"} {
			p := filepath.Join(dir, sub)
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			added := make(chan error, 1)
			go func() { added <- w.Add(p) }()
			select {
			case err := <-added:
				if err != nil {
					t.Fatalf("Add %s: %v", p, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("Add %s did not return within 10s: it waits for a consumer that takes nothing", p)
			}
		}
		gone := filepath.Join(trash, fmt.Sprintf("d%d", i))
		if err := os.Rename(dir, gone); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(gone); err != nil {
			t.Fatal(err)
		}
	}
	b := w.Take()
	if !b.Overflow && len(b.Names) == 0 {
		t.Fatal("nothing was collected")
	}
}

// TestBatchDeduplicatesAndOverflows: a name is reported once per batch; past MaxPendingNames the batch says overflow
// and carries no names (the consumer rescans).
func TestBatchDeduplicatesAndOverflows(t *testing.T) {
	w := &Watcher{ready: make(chan struct{}, 1), names: map[string]int{}}
	w.add("/a", Write)
	w.add("/b", Create)
	w.add("/a", Chmod)
	w.signal()
	select {
	case <-w.Ready():
	default:
		t.Fatal("no ready token after events")
	}
	if b := w.Take(); len(b.Names) != 2 || b.Names[0] != "/a" || b.Names[1] != "/b" || b.Overflow {
		t.Fatalf("batch %+v, want [/a /b]", b)
	} else if b.Ops[0] != Write|Chmod || b.Ops[1] != Create {
		t.Fatalf("ops %v, want [WRITE|CHMOD CREATE]: each name's ops joined", b.Ops)
	}
	for i := 0; i <= MaxPendingNames; i++ {
		w.add(fmt.Sprint("/", i), Write)
	}
	if b := w.Take(); !b.Overflow || b.Names != nil {
		t.Fatalf("after %d names: overflow %v, %d names", MaxPendingNames+1, b.Overflow, len(b.Names))
	}
	if b := w.Take(); b.Overflow || len(b.Names) != 0 {
		t.Fatalf("a second Take: %+v", b)
	}
}
