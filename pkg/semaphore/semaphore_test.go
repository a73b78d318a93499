package semaphore

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

const ns = "keeplog-system"

var leaseGVR = coordinationv1.SchemeGroupVersion.WithResource("leases")

// newFake is a fake clientset whose leases behave like the API server's
// for optimistic concurrency: every write bumps resourceVersion, and an
// update with a stale one gets Conflict (the plain fake does not check).
func newFake(t *testing.T) *fake.Clientset {
	cs := fake.NewClientset()
	tr := cs.Tracker()
	var mu sync.Mutex
	rv := 0
	cs.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		l := a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		rv++
		l.ResourceVersion = strconv.Itoa(rv)
		if err := tr.Create(leaseGVR, l, a.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, l, nil
	})
	cs.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		l := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		cur, err := tr.Get(leaseGVR, a.GetNamespace(), l.Name)
		if err != nil {
			return true, nil, err
		}
		if cur.(*coordinationv1.Lease).ResourceVersion != l.ResourceVersion {
			return true, nil, apierrors.NewConflict(leaseGVR.GroupResource(), l.Name, nil)
		}
		rv++
		l.ResourceVersion = strconv.Itoa(rv)
		if err := tr.Update(leaseGVR, l, a.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, l, nil
	})
	return cs
}

func newSem(t *testing.T, cs *fake.Clientset, holder string, slots int, clk *clocktesting.FakeClock) *Semaphore {
	t.Helper()
	s, err := New(cs.CoordinationV1().Leases(ns), Config{Namespace: ns, Prefix: "upload", Slots: slots, Holder: holder,
		LeaseDuration: 30 * time.Second, RenewInterval: 10 * time.Second, RetryInterval: 2 * time.Second}, clk)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func getLease(t *testing.T, cs *fake.Clientset, name string) *coordinationv1.Lease {
	t.Helper()
	l, err := cs.CoordinationV1().Leases(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func holderOf(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// eventually polls cond; the deadline only stops a hung test.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type result struct {
	held    context.Context
	release func()
	err     error
}

func acquireAsync(ctx context.Context, s *Semaphore) <-chan result {
	ch := make(chan result, 1)
	go func() {
		h, r, err := s.Acquire(ctx)
		ch <- result{h, r, err}
	}()
	return ch
}

func TestConfigValidation(t *testing.T) {
	cs := newFake(t)
	for name, cfg := range map[string]Config{
		"no namespace":   {Prefix: "p", Slots: 1, Holder: "n"},
		"no prefix":      {Namespace: ns, Slots: 1, Holder: "n"},
		"no holder":      {Namespace: ns, Prefix: "p", Slots: 1},
		"zero slots":     {Namespace: ns, Prefix: "p", Holder: "n"},
		"single of two":  {Namespace: ns, Prefix: "p", Slots: 2, Holder: "n", Single: true},
		"renew too slow": {Namespace: ns, Prefix: "p", Slots: 1, Holder: "n", LeaseDuration: 10 * time.Second, RenewInterval: 10 * time.Second},
	} {
		if _, err := New(cs.CoordinationV1().Leases(ns), cfg, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAcquireBlocksAtNAndReleaseFreesASlot(t *testing.T) {
	cs := newFake(t)
	clk := clocktesting.NewFakeClock(time.Now())
	a := newSem(t, cs, "node-a", 2, clk)
	b := newSem(t, cs, "node-b", 2, clk)
	ctx := context.Background()
	_, relA, err := a.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, relB, err := b.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	holders := map[string]bool{holderOf(getLease(t, cs, "upload-0")): true, holderOf(getLease(t, cs, "upload-1")): true}
	if !holders["node-a"] || !holders["node-b"] {
		t.Fatalf("lease holders %v, want node-a and node-b", holders)
	}
	// A third holder waits, also across many retry intervals (the two
	// holders keep renewing).
	third := acquireAsync(ctx, newSem(t, cs, "node-c", 2, clk))
	for i := 0; i < 30; i++ {
		// Both renewers and the third's retry wait before each step: stepping while a renewer is busy with its
		// last renewal lets fake time pass it by (30 steps outran a starved renewer once in CI).
		eventually(t, "both renewers and the third waiting", func() bool { return clk.Waiters() >= 3 })
		clk.Step(2 * time.Second)
		select {
		case r := <-third:
			t.Fatalf("third Acquire returned (%v) while 2 of 2 slots are held", r.err)
		default:
		}
	}
	relA()
	eventually(t, "the third holder gets the released slot", func() bool {
		clk.Step(3 * time.Second)
		select {
		case r := <-third:
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer r.release()
			return true
		default:
			return false
		}
	})
	relB()
	relB() // idempotent
}

func TestTakeOverAfterExpiry(t *testing.T) {
	cs := newFake(t)
	clk := clocktesting.NewFakeClock(time.Now())
	// A holder that died: its lease is not renewed any more.
	dead := "node-dead"
	secs := int32(30)
	mt := metav1.NewMicroTime(clk.Now())
	if _, err := cs.CoordinationV1().Leases(ns).Create(context.Background(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "upload-0", Namespace: ns},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &dead, LeaseDurationSeconds: &secs, AcquireTime: &mt, RenewTime: &mt},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s := newSem(t, cs, "node-b", 1, clk)
	got := acquireAsync(context.Background(), s)
	// Not before the lease expired.
	for elapsed := time.Duration(0); elapsed < 28*time.Second; elapsed += 2 * time.Second {
		eventually(t, "waiters", func() bool { return clk.HasWaiters() })
		clk.Step(2 * time.Second)
		select {
		case <-got:
			t.Fatalf("took over a lease renewed %v ago (duration 30s)", elapsed+2*time.Second)
		default:
		}
	}
	var r result
	eventually(t, "take-over after expiry", func() bool {
		clk.Step(2 * time.Second)
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
	l := getLease(t, cs, "upload-0")
	if holderOf(l) != "node-b" || l.Spec.LeaseTransitions == nil || *l.Spec.LeaseTransitions != 1 {
		t.Fatalf("after take-over: holder %q transitions %v", holderOf(l), l.Spec.LeaseTransitions)
	}
}

func TestRenewKeepsTheSlotAndLossCancels(t *testing.T) {
	cs := newFake(t)
	clk := clocktesting.NewFakeClock(time.Now())
	s := newSem(t, cs, "node-a", 1, clk)
	held, release, err := s.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	first := getLease(t, cs, "upload-0").Spec.RenewTime.Time
	// Many lease durations pass: renewals keep it.
	for i := 0; i < 12; i++ {
		eventually(t, "the renewer waiting", func() bool { return clk.HasWaiters() })
		before := getLease(t, cs, "upload-0").ResourceVersion
		clk.Step(10 * time.Second)
		eventually(t, "a renewal", func() bool { return getLease(t, cs, "upload-0").ResourceVersion != before })
	}
	l := getLease(t, cs, "upload-0")
	if !l.Spec.RenewTime.After(first.Add(100*time.Second)) || held.Err() != nil || holderOf(l) != "node-a" {
		t.Fatalf("after 120s: renewTime %v (first %v), held err %v, holder %q", l.Spec.RenewTime, first, held.Err(), holderOf(l))
	}
	// Someone else writes the lease (e.g. took it after a long partition):
	// the next renewal conflicts and the holder learns it lost the slot.
	other := "node-x"
	l.Spec.HolderIdentity = &other
	if _, err := cs.CoordinationV1().Leases(ns).Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the renewer waiting", func() bool { return clk.HasWaiters() })
	clk.Step(10 * time.Second)
	eventually(t, "loss noticed", func() bool { return held.Err() != nil })
	release()
	if h := holderOf(getLease(t, cs, "upload-0")); h != "node-x" {
		t.Fatalf("release after loss changed the lease: holder %q", h)
	}
}

func TestReleaseClearsHolder(t *testing.T) {
	cs := newFake(t)
	clk := clocktesting.NewFakeClock(time.Now())
	a := newSem(t, cs, "node-a", 1, clk)
	held, release, err := a.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	release()
	if held.Err() == nil {
		t.Fatal("held context not cancelled by release")
	}
	if h := holderOf(getLease(t, cs, "upload-0")); h != "" {
		t.Fatalf("holder after release: %q", h)
	}
	// Free at once for another node, without waiting for expiry.
	_, rel, err := newSem(t, cs, "node-b", 1, clk).Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rel()
}

func TestConcurrentAcquireNeverExceedsSlots(t *testing.T) {
	cs := newFake(t)
	clk := clocktesting.NewFakeClock(time.Now())
	var inside, peak atomic.Int32
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { // keep time moving for the waiters
		for {
			select {
			case <-done:
				return
			default:
				// 20 ms of fake time a millisecond: a holder would have to be starved for 1.5 s before
				// its 30 s lease expired under it.
				clk.Step(20 * time.Millisecond)
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for i := 0; i < 6; i++ {
		s := newSem(t, cs, "node-"+strconv.Itoa(i), 1, clk)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				_, rel, err := s.Acquire(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				n := inside.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				time.Sleep(time.Millisecond)
				inside.Add(-1)
				rel()
			}
		}()
	}
	wg.Wait()
	close(done)
	if p := peak.Load(); p != 1 {
		t.Fatalf("%d holders at once with 1 slot", p)
	}
}

func TestAcquireWithinGivesUpAndASlotOutlivesTheWait(t *testing.T) {
	cs := newFake(t)
	clk := clocktesting.NewFakeClock(time.Now())
	a := newSem(t, cs, "node-a", 1, clk)
	b := newSem(t, cs, "node-b", 1, clk)
	ctx := context.Background()
	heldA, relA, err := a.AcquireWithin(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan result, 1)
	go func() {
		h, r, err := b.AcquireWithin(ctx, 5*time.Second)
		ch <- result{h, r, err}
	}()
	var r result
	eventually(t, "the waiter gives up after its wait", func() bool {
		if clk.HasWaiters() {
			clk.Step(time.Second)
		}
		select {
		case r = <-ch:
			return true
		default:
			return false
		}
	})
	if r.err == nil || !strings.Contains(r.err.Error(), "all 1 slots taken") {
		t.Fatalf("waiter: %v, want it to give up because the slot is taken", r.err)
	}
	// The wait bound never reaches the slot that was obtained: a minute after it, a's slot is still held. Fake time
	// moves one renewal interval at a time, each only once the renewer has renewed, so that it cannot pass a
	// renewer that has not had its turn (one step of a minute let the renewer find its lease 20 s overdue, a CI
	// failure).
	for i := 0; i < 6; i++ {
		eventually(t, "the renewer waiting", func() bool { return clk.HasWaiters() })
		before := getLease(t, cs, "upload-0").ResourceVersion
		clk.Step(10 * time.Second)
		eventually(t, "a renewal", func() bool { return getLease(t, cs, "upload-0").ResourceVersion != before })
	}
	if heldA.Err() != nil || holderOf(getLease(t, cs, "upload-0")) != "node-a" {
		t.Fatalf("a's slot ended with the wait bound: %v, holder %s", context.Cause(heldA), holderOf(getLease(t, cs, "upload-0")))
	}
	relA()
}
