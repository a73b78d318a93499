package archiver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keeplog/keeplog/pkg/api"
)

// refusingDialer is an archive target that refuses every connection with the error it is set to.
type refusingDialer struct{ err error }

func (d *refusingDialer) Dial(context.Context) (Remote, error) { return nil, d.err }

// TestArchiveRetryingIsSentAgainWhileTheUploadKeepsFailing: a file whose uploads keep failing sends its
// ArchiveRetrying Event at the first failure, not again for the same error within retryEventInterval, at once for
// a new error, and again each interval while it persists; so a target that stays broken is still in the pod's
// Events after the API server dropped the first (its TTL is 1 h by default). Each attempt goes through process, as
// a worker's does, with the clock faked.
func TestArchiveRetryingIsSentAgainWhileTheUploadKeepsFailing(t *testing.T) {
	root := t.TempDir()
	state := filepath.Join(root, ".keeplog", "archiver")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(time.Unix(1700000000, 0))
	t0 := clk.Now()
	dialer := &refusingDialer{}
	rec := &fakeRecorder{}
	a, err := New(Config{NodeName: "node-a", Target: Target{BaseDir: "/archive"}},
		Deps{Root: root, StateDir: state, Clock: clk, Dialer: dialer, Recorder: rec, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	const pod = "ns_web_0123456789abcdef0123456789abcdef"
	ref, err := parsePodDir(pod)
	if err != nil {
		t.Fatal(err)
	}
	it, err := a.journal.Queue(Item{ID: itemID(pod, "app/heap.hprof", 7, 100, 5), PodDir: pod, Rel: "app/heap.hprof",
		Container: "app", Ino: 7, Size: 100, MtimeNs: 5, State: StateQueued, QueuedAt: t0, pod: ref},
		"/archive/heap.hprof")
	if err != nil {
		t.Fatal(err)
	}
	wrongKey := errors.New("ssh: handshake failed: unable to authenticate")
	full := func(req int) error {
		return fmt.Errorf("s3 put bucket/heap.hprof: server error: HTTP 507 InsufficientStorage [request %d]", req)
	}
	for i, step := range []struct {
		at     time.Duration // since t0
		err    error
		events int // ArchiveRetrying Events sent so far
	}{
		{0, wrongKey, 1}, // the first failure
		{time.Minute, wrongKey, 1},
		{2 * time.Minute, wrongKey, 1},
		{5 * time.Minute, wrongKey, 1},
		{10 * time.Minute, wrongKey, 1},
		{29 * time.Minute, wrongKey, 1},                // the same error 5 times within the interval: nothing more
		{29*time.Minute + 10*time.Second, full(1), 2},  // a new error: at once
		{29*time.Minute + 20*time.Second, full(2), 2},  // the same cause (another request ID)
		{29*time.Minute + 30*time.Second, wrongKey, 2}, // back to the first error, sent 29.5 min ago: not again yet
		{30 * time.Minute, wrongKey, 3},                // 30 min after its last Event
		{40 * time.Minute, full(3), 3},
		{59 * time.Minute, full(4), 3},
		{59*time.Minute + 10*time.Second, full(5), 4}, // 30 min after its last Event
		{60 * time.Minute, wrongKey, 5},
		{89 * time.Minute, full(6), 5},
		{89*time.Minute + 10*time.Second, full(7), 6},
	} {
		clk.SetTime(t0.Add(step.at))
		dialer.err = step.err
		cur, ok := a.journal.Get(it.ID)
		if !ok {
			t.Fatal("the item left the journal")
		}
		a.process(context.Background(), nil, cur)
		if got := rec.count(api.ReasonArchiveRetrying); got != step.events {
			t.Fatalf("step %d (%v after the first failure, %v): %d ArchiveRetrying Events, want %d: %v", i, step.at,
				step.err, got, step.events, rec.all())
		}
	}
	var evs []string
	for _, ev := range rec.all() {
		if strings.Contains(ev, " "+api.ReasonArchiveRetrying+" ") {
			evs = append(evs, ev)
		}
	}
	if !strings.Contains(evs[0], "Warning ArchiveRetrying ns/web: app/heap.hprof: upload failed, retrying: "+wrongKey.Error()) {
		t.Errorf("first Event %q does not name the file and the error", evs[0])
	}
	if !strings.Contains(evs[1], "InsufficientStorage") || !strings.Contains(evs[1], "7 attempts since it was queued at") {
		t.Errorf("second Event %q does not say the new error and how many attempts failed", evs[1])
	}
	// Once the file is archived (or given up) its memory goes with the interval: another file's failure then
	// leaves only its own Event remembered.
	cur, _ := a.journal.Get(it.ID)
	a.afterDone(cur)
	clk.Step(retryEventInterval)
	if !a.retryEv.due("another item", wrongKey) {
		t.Fatal("another item's first failure sends no Event")
	}
	if n := a.retryEv.sent.Len(); n != 1 {
		t.Errorf("%d Events remembered an interval after the only failing file was archived, want 1 (another item's)", n)
	}
}

// TestRetryEventsStayBounded: items failing once each are not remembered past the interval.
func TestRetryEventsStayBounded(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1700000000, 0))
	r := newRetryEvents(clk)
	boom := errors.New("boom")
	for i := range 10_000 {
		if !r.due(fmt.Sprint(i), boom) {
			t.Fatalf("item %d's first failure sends no Event", i)
		}
		clk.Step(time.Second)
	}
	// 10,000 s: only the items of the last 30 min (1,800) are remembered.
	if n, want := r.sent.Len(), int(retryEventInterval/time.Second); n != want {
		t.Fatalf("%d items remembered, want %d", n, want)
	}
}
