package dump

import (
	"context"
	"strings"
	"testing"
	"time"
)

// stepWhenWaiting advances the fake clock by d, n times, each time only once the dump goroutine waits on it, so
// that every step is one wake-up of the wait.
func (e *env) stepWhenWaiting(n int, d time.Duration) {
	e.t.Helper()
	for range n {
		deadline := time.Now().Add(10 * time.Second)
		for !e.clk.HasWaiters() {
			if time.Now().After(deadline) {
				e.t.Fatalf("the dump is not waiting on the clock; events:\n%s", e.events)
			}
			time.Sleep(time.Millisecond)
		}
		e.clk.Step(d)
	}
}

// TestArchiverAskedOnABackoff: while a quiet dump file waits for the archiver, Pending (a fresh walk of the pod
// directory against the journal) is asked on a backoff up to maxAskStep, not at every one-second step: 60 s of
// waiting asked it about 57 times before, and asks it at most 10 times now. DumpFinished still comes only once
// Pending says the archiver is done, and at most maxAskStep later.
func TestArchiverAskedOnABackoff(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.pending.Store(true)
	e.mem.set(90*mi, 100*mi)
	e.m.check(context.Background())
	for e.hits.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	e.stepWhenWaiting(60, time.Second) // the file is quiet after 3 s (QuietPeriod), then not archived for 57 s
	asked := e.asked.Load()
	if asked == 0 || asked > 10 {
		t.Errorf("Pending asked %d times in 60 s of waiting, want 1..10 (a backoff up to %s)", asked, maxAskStep)
	}
	if !e.busy() || !e.sem.isHeld() || e.decisions(DecisionFinished) != 0 {
		t.Fatalf("busy=%v held=%v finished=%d: the dump is not archived yet", e.busy(), e.sem.isHeld(), e.decisions(DecisionFinished))
	}
	e.pending.Store(false)
	waited := 0
	for e.busy() && waited < int(maxAskStep/time.Second) {
		e.stepWhenWaiting(1, time.Second)
		waited++
		for i := 0; i < 200 && e.decisions(DecisionFinished) == 0 && !e.clk.HasWaiters(); i++ {
			time.Sleep(time.Millisecond)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.busy() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if e.busy() || e.sem.isHeld() {
		t.Fatalf("still waiting %d s after the archiver was done (bound %s)", waited, maxAskStep)
	}
	e.expect(1, map[string]int{DecisionFinished: 1})
	if !strings.Contains(e.events.String(), "written and archived") {
		t.Fatalf("finished event does not say archived:\n%s", e.events)
	}
	t.Logf("Pending asked %d times in 60 s; finished %d s after the archiver was done", asked, waited)
}
