package semaphore

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
)

// hangingLeases is a Leases whose updates, while hang is set, block until their context ends: an API server that
// accepts the connection and never answers (a network partition that drops packets); while fail is set, they fail
// at once.
type hangingLeases struct {
	Leases
	hang  atomic.Bool
	fail  atomic.Bool
	calls atomic.Int32
}

func (h *hangingLeases) Update(ctx context.Context, l *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	h.calls.Add(1)
	if h.fail.Load() {
		return nil, apierrors.NewServiceUnavailable("refused")
	}
	if h.hang.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return h.Leases.Update(ctx, l, opts)
}

// holdSlot makes node-a's one "upload" slot on leases with cfg's timings (Namespace, Prefix, Slots and Holder are
// filled in) and clk (nil: the real clock), and acquires it; the slot is released when the test ends. It returns
// the held slot's context and the Config, for a contender to reuse.
func holdSlot(t *testing.T, leases Leases, cfg Config, clk clock.Clock) (context.Context, Config) {
	t.Helper()
	cfg.Namespace, cfg.Prefix, cfg.Slots, cfg.Holder = ns, "upload", 1, "node-a"
	s, err := New(leases, cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	held, release, err := s.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return held, cfg
}

// A holder whose renewals hang loses its slot LeaseDuration-RenewInterval after its last renewal, while the renewal
// is still in flight, so before the lease expires for a contender. Before the fix it waited for the hung request
// for a whole RenewInterval and then another RenewInterval before it checked, so a contender took the slot while it
// still held it. Real clock, 6 s lease renewed every 2 s: the holder gives up at about 4 s, the contender takes it
// after 6 s (before the fix: at 8 s).
func TestHungRenewalLosesTheSlotBeforeTheLeaseExpires(t *testing.T) {
	cs := newFake(t)
	leases := &hangingLeases{Leases: cs.CoordinationV1().Leases(ns)}
	held, cfg := holdSlot(t, leases, Config{LeaseDuration: 6 * time.Second, RenewInterval: 2 * time.Second,
		RetryInterval: 200 * time.Millisecond}, nil)
	leases.hang.Store(true)
	cfg.Holder = "node-b"
	b, err := New(cs.CoordinationV1().Leases(ns), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := acquireAsync(context.Background(), b)
	var r result
	select {
	case <-held.Done():
	case r = <-got:
		t.Fatalf("node-b took the slot (%v) while node-a, its renewals hanging, still held it", r.err)
	case <-time.After(20 * time.Second):
		t.Fatal("node-a still holds the slot 20 s after its renewals began to hang")
	}
	select {
	case r = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("node-b did not take the expired slot")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.release()
	if l := getLease(t, cs, "upload-0"); l.Spec.LeaseTransitions == nil || *l.Spec.LeaseTransitions != 1 {
		t.Fatalf("transitions %v, want node-b's take-over", l.Spec.LeaseTransitions)
	}
}

// A failed renewal is retried after RetryInterval, not a whole RenewInterval later: an API server that refuses
// requests for a few seconds does not cost the slot (before the fix the retry came at LeaseDuration-RenewInterval,
// the moment the slot counts as lost).
func TestFailedRenewalRetriedSoon(t *testing.T) {
	cs := newFake(t)
	clk := clocktesting.NewFakeClock(time.Now())
	leases := &hangingLeases{Leases: cs.CoordinationV1().Leases(ns)}
	held, _ := holdSlot(t, leases, Config{LeaseDuration: 30 * time.Second, RenewInterval: 10 * time.Second,
		RetryInterval: 2 * time.Second}, clk)
	leases.fail.Store(true)
	eventually(t, "the renewer waiting", func() bool { return clk.HasWaiters() })
	clk.Step(10 * time.Second) // the renewal at +10s fails
	eventually(t, "the renewal sent", func() bool { return leases.calls.Load() == 1 })
	leases.fail.Store(false)
	before := getLease(t, cs, "upload-0").ResourceVersion
	for step := 0; step < 3 && getLease(t, cs, "upload-0").ResourceVersion == before; step++ {
		eventually(t, "the renewer waiting", func() bool { return clk.HasWaiters() })
		clk.Step(time.Second)
		eventually(t, "the renewer done or waiting", func() bool { return leases.calls.Load() > 1 || clk.HasWaiters() })
	}
	if held.Err() != nil || getLease(t, cs, "upload-0").ResourceVersion == before {
		t.Fatalf("%d renewal attempts, slot lost: %v: not renewed within 3 s of the failure", leases.calls.Load(), context.Cause(held))
	}
}

// stepUntil moves the fake clock on by a second whenever someone waits on it, until cond.
func stepUntil(t *testing.T, clk *clocktesting.FakeClock, what string, cond func() bool) {
	t.Helper()
	eventually(t, what, func() bool {
		if cond() {
			return true
		}
		if clk.HasWaiters() {
			clk.Step(time.Second)
		}
		return false
	})
}

// A RenewInterval of more than half the LeaseDuration still renews: the slot is lost only halfway between the
// renewal's attempt and the lease's expiry, not at the attempt.
func TestLongRenewIntervalKeepsTheSlot(t *testing.T) {
	cs := newFake(t)
	clk := clocktesting.NewFakeClock(time.Now())
	held, _ := holdSlot(t, cs.CoordinationV1().Leases(ns), Config{LeaseDuration: 30 * time.Second, RenewInterval: 20 * time.Second}, clk)
	for i := 0; i < 5; i++ {
		before := getLease(t, cs, "upload-0").ResourceVersion
		stepUntil(t, clk, "a renewal", func() bool { return getLease(t, cs, "upload-0").ResourceVersion != before || held.Err() != nil })
		if held.Err() != nil {
			t.Fatalf("renewal %d: slot lost: %v", i+1, context.Cause(held))
		}
	}
}
