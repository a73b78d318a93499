package semaphore

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// A holder whose renewals hang loses its slot LeaseDuration-RenewInterval after its last renewal, while the renewal
// is still in flight, so before the lease expires for a contender; before the fix it waited for the hung request
// (a real-time RenewInterval) and then a whole RenewInterval more before it checked, so it still held the slot
// when the contender took it.
func TestHungRenewalLosesTheSlotBeforeTheLeaseExpires(t *testing.T) {
	cs := newFake(t)
	clk := clocktesting.NewFakeClock(time.Now())
	leases := &hangingLeases{Leases: cs.CoordinationV1().Leases(ns)}
	cfg := Config{Namespace: ns, Prefix: "upload", Slots: 1, Holder: "node-a", LeaseDuration: 30 * time.Second,
		RenewInterval: 10 * time.Second, RetryInterval: 2 * time.Second}
	a, err := New(leases, cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	held, release, err := a.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	renewed := getLease(t, cs, "upload-0").Spec.RenewTime.Time
	leases.hang.Store(true)
	eventually(t, "the renewer waiting", func() bool { return clk.HasWaiters() })
	// The renewal at +10s hangs; time goes on (1 s steps of the fake clock, whether anyone waits or not) up to +29s,
	// one second before the lease expires for everyone else.
	for step := 1; step <= 29; step++ {
		clk.Step(time.Second)
		time.Sleep(20 * time.Millisecond)
		if lost := held.Err() != nil; lost && step < 20 {
			t.Fatalf("slot lost %v after the last renewal, before LeaseDuration-RenewInterval (20s)", clk.Since(renewed))
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for held.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the holder still holds the slot %v after its last renewal (its renewal hung), 1 s before the lease expires", clk.Since(renewed))
		}
		time.Sleep(time.Millisecond)
	}
	// Only now may a contender take it: not before the lease's expiry at +30s.
	cfg.Holder = "node-b"
	b, err := New(cs.CoordinationV1().Leases(ns), cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	got := acquireAsync(context.Background(), b)
	var r result
	eventually(t, "node-b takes the expired lease", func() bool {
		clk.Step(time.Second)
		select {
		case r = <-got:
			return true
		default:
			return false
		}
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.release()
	if since := clk.Since(renewed); since <= 30*time.Second {
		t.Fatalf("node-b took the lease %v after node-a's last renewal, before its 30 s expiry", since)
	}
}

// A failed renewal is retried after RetryInterval, not a whole RenewInterval later: an API server that refuses
// requests for a few seconds does not cost the slot (before the fix the retry came at LeaseDuration-RenewInterval,
// the moment the slot counts as lost).
func TestFailedRenewalRetriedSoon(t *testing.T) {
	cs := newFake(t)
	clk := clocktesting.NewFakeClock(time.Now())
	leases := &hangingLeases{Leases: cs.CoordinationV1().Leases(ns)}
	s, err := New(leases, Config{Namespace: ns, Prefix: "upload", Slots: 1, Holder: "node-a", LeaseDuration: 30 * time.Second,
		RenewInterval: 10 * time.Second, RetryInterval: 2 * time.Second}, clk)
	if err != nil {
		t.Fatal(err)
	}
	held, release, err := s.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
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

// A RenewInterval of more than half the LeaseDuration still renews: the slot is lost only halfway between the
// renewal's attempt and the lease's expiry, not at the attempt.
func TestLongRenewIntervalKeepsTheSlot(t *testing.T) {
	cs := newFake(t)
	clk := clocktesting.NewFakeClock(time.Now())
	s, err := New(cs.CoordinationV1().Leases(ns), Config{Namespace: ns, Prefix: "upload", Slots: 1, Holder: "node-a",
		LeaseDuration: 30 * time.Second, RenewInterval: 20 * time.Second}, clk)
	if err != nil {
		t.Fatal(err)
	}
	held, release, err := s.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	for i := 0; i < 5; i++ {
		before := getLease(t, cs, "upload-0").ResourceVersion
		stepUntil(t, clk, "a renewal", func() bool { return getLease(t, cs, "upload-0").ResourceVersion != before || held.Err() != nil })
		if held.Err() != nil {
			t.Fatalf("renewal %d: slot lost: %v", i+1, context.Cause(held))
		}
	}
}
