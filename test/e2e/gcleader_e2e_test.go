//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/test/binary"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

const (
	leaderLease = "keeplog-gc-leader"
	leaderNS    = "kube-system"
	// leaderLeaseDuration is gc.RunElected's default (renewed every 5 s, contenders retry every 2 s): no flag
	// sets it, and 15 s is short enough for this test.
	leaderLeaseDuration = 15 * time.Second
	// The log lines of pkg/gc the test reads (--log-format=json).
	msgLeading   = "Leading the cluster-wide garbage collection"
	msgMarkedPV  = "PV's node does not exist; it is deleted after the grace period unless the node comes back"
	msgDeletedPV = "Deleted the PV of a vanished node"
)

// TestGCLeaderHandOff runs two bin/keeplog processes ("node-a" and "node-b", both Node objects in the lab) against
// the lab's API server, as two nodes' plugins: the one holding the Lease keeplog-gc-leader deletes a PV of a
// vanished node while the other does nothing; SIGKILLed, it stops renewing, and the other takes the Lease once it
// has expired (not before) and deletes the next such PV, once; restarted, the killed one stays a follower while the
// survivor renews, and takes over at once when the survivor is stopped with SIGTERM (it clears the Lease). A PV of
// node-a, a Node that exists (its plugin killed while it led, when node-a led), is never touched.
func TestGCLeaderHandOff(t *testing.T) {
	ctx := context.Background()
	l := startLab(ctx, t)
	c := l.Client()
	tl := &timeline{t: t, begin: time.Now()}
	t.Cleanup(tl.print)
	ids := []string{"node-a", "node-b"}
	for _, id := range ids {
		if _, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: id}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	live := createPV(ctx, t, c, "pv-of-node-a", "node-a")
	procs := map[string]*binary.Keeplog{}
	for _, id := range ids {
		procs[id] = startGCNode(ctx, t, l.Kubeconfig(), id)
	}
	lease := waitLease(ctx, t, c, "a holder", func(l *coordinationv1.Lease) bool { return holderOf(l) != "" })
	leader := holderOf(lease)
	follower := ids[0]
	if follower == leader {
		follower = ids[1]
	}
	tl.at("Lease taken by "+leader, lease.Spec.AcquireTime.Time)

	// The leader deletes the first PV of a vanished node; the follower does not act.
	waitPVDeleted(ctx, t, c, createPV(ctx, t, c, "pv-ghost-1", "ghost-1"), procs)
	tl.at("pv-ghost-1 deleted by "+leader+" (its log)", wantDeletedBy(t, procs, "pv-ghost-1", leader))
	wantNotLeading(t, procs[follower], 0)
	wantCleanups(ctx, t, procs[leader], 1)
	wantCleanups(ctx, t, procs[follower], 0)

	// SIGKILL the leader: the survivor takes the Lease once it has expired, then deletes the second PV.
	if err := procs[leader].Kill(); err != nil {
		t.Fatal(err)
	}
	tl.at("SIGKILL "+leader, time.Now())
	last := getLease(ctx, t, c)
	tl.at("last renewal by "+leader, last.Spec.RenewTime.Time)
	tl.at("its expiry", last.Spec.RenewTime.Add(time.Duration(*last.Spec.LeaseDurationSeconds)*time.Second))
	ghost2 := createPV(ctx, t, c, "pv-ghost-2", "ghost-2")
	taken := waitLease(ctx, t, c, "a new holder", func(l *coordinationv1.Lease) bool { return holderOf(l) != leader })
	tl.at("Lease taken over by "+holderOf(taken), taken.Spec.AcquireTime.Time)
	wantTakeover(t, last, taken, follower)
	waitPVDeleted(ctx, t, c, ghost2, procs)
	tl.at("pv-ghost-2 deleted by "+follower+" (its log)", wantDeletedBy(t, procs, "pv-ghost-2", follower))
	wantMarkedAfter(t, procs[follower], "pv-ghost-2", taken.Spec.AcquireTime.Time)
	wantCleanups(ctx, t, procs[follower], 1)

	// Restarted, the killed one stays a follower for longer than a Lease: the survivor renews and deletes the third.
	restarted := logSize(t, procs[leader])
	if err := procs[leader].Start(ctx); err != nil {
		t.Fatal(err)
	}
	tl.at("restarted "+leader, time.Now())
	ghost3 := createPV(ctx, t, c, "pv-ghost-3", "ghost-3")
	holdsFor(ctx, t, c, follower, leaderLeaseDuration+5*time.Second, taken)
	waitPVDeleted(ctx, t, c, ghost3, procs)
	tl.at("pv-ghost-3 deleted by "+follower+" (its log)", wantDeletedBy(t, procs, "pv-ghost-3", follower))
	wantNotLeading(t, procs[leader], restarted)
	wantCleanups(ctx, t, procs[leader], 0)
	// Stopped with SIGTERM, the survivor clears the Lease: the restarted one takes it before it would have expired.
	handOffOnStop(ctx, t, c, tl, procs, follower, leader)
	if pv, err := c.CoreV1().PersistentVolumes().Get(ctx, live.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("the PV of node-a (a Node that exists, its plugin dead for a while) was deleted: %v", err)
	} else if v, ok := pv.Annotations[api.AnnotationPVNodeMissingSince]; ok {
		t.Fatalf("the PV of node-a, which exists, was marked %s=%s", api.AnnotationPVNodeMissingSince, v)
	}
}

// handOffOnStop stops the holder with SIGTERM and checks that next takes the Lease before the holder's last
// renewal would have expired (it was cleared, not left to expire) and then deletes a PV of a vanished node.
func handOffOnStop(ctx context.Context, t *testing.T, c kubernetes.Interface, tl *timeline, procs map[string]*binary.Keeplog, holder, next string) {
	t.Helper()
	last := getLease(ctx, t, c)
	if holderOf(last) != holder || last.Spec.RenewTime == nil {
		t.Fatalf("Lease before the SIGTERM: holder %q, renew time %v; want %s's", holderOf(last), last.Spec.RenewTime, holder)
	}
	tl.at("last renewal by "+holder+" before its SIGTERM", last.Spec.RenewTime.Time)
	if err := procs[holder].Stop(); err != nil {
		t.Fatal(err)
	}
	tl.at("SIGTERM "+holder+" (exited)", time.Now())
	taken := waitLease(ctx, t, c, "holder "+next, func(l *coordinationv1.Lease) bool { return holderOf(l) == next })
	tl.at("Lease taken by "+next, taken.Spec.AcquireTime.Time)
	// A Lease left to expire could not be taken before its last renewal (this one or a later one) plus 15 s.
	if expiry := last.Spec.RenewTime.Add(leaderLeaseDuration); !taken.Spec.AcquireTime.Time.Before(expiry) {
		t.Fatalf("%s took the Lease at %s, not before %s's last renewal expired at %s: the stopped holder did not clear it",
			next, taken.Spec.AcquireTime.Format(time.StampMilli), holder, expiry.Format(time.StampMilli))
	}
	pv := createPV(ctx, t, c, "pv-ghost-4", "ghost-4")
	waitPVDeleted(ctx, t, c, pv, procs)
	tl.at("pv-ghost-4 deleted by "+next+" (its log)", wantDeletedBy(t, procs, "pv-ghost-4", next))
}

// startGCNode starts a keeplog as node id's plugin: its own root and socket, the kubeconfig (the lab's, or one
// through a proxy), a GC pass every second and a 2 s grace for PVs of vanished nodes, JSON logs.
func startGCNode(ctx context.Context, t *testing.T, kubeconfig, id string) *binary.Keeplog {
	kl, err := binary.StartKeeplog(ctx, binary.Config{WorkDir: filepath.Join(t.TempDir(), id), NodeID: id,
		Kubeconfig: kubeconfig, Args: []string{"--namespace=" + leaderNS, "--gc-interval=1s",
			"--orphan-pv-grace=2s", "--log-format=json"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kl.Stop() })
	return kl
}

func createPV(ctx context.Context, t *testing.T, c kubernetes.Interface, name, node string) *corev1.PersistentVolume {
	t.Helper()
	pv, err := c.CoreV1().PersistentVolumes().Create(ctx, framework.NodePV(name, node, ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pv
}

func holderOf(l *coordinationv1.Lease) string {
	if l == nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func getLease(ctx context.Context, t *testing.T, c kubernetes.Interface) *coordinationv1.Lease {
	t.Helper()
	l, err := c.CoordinationV1().Leases(leaderNS).Get(ctx, leaderLease, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitLease polls the Lease (every 200 ms, for up to three Lease durations) until ok.
func waitLease(ctx context.Context, t *testing.T, c kubernetes.Interface, what string, ok func(*coordinationv1.Lease) bool) *coordinationv1.Lease {
	t.Helper()
	var last *coordinationv1.Lease
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*leaderLeaseDuration, true, func(ctx context.Context) (bool, error) {
		l, err := c.CoordinationV1().Leases(leaderNS).Get(ctx, leaderLease, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = l
		return ok(l), nil
	})
	if err != nil {
		t.Fatalf("Lease %s/%s has no %s: %v; last seen %+v", leaderNS, leaderLease, what, err, last)
	}
	return last
}

// wantTakeover checks the new holder and that it took the Lease only once the dead holder's last renewal had expired.
func wantTakeover(t *testing.T, last, taken *coordinationv1.Lease, survivor string) {
	t.Helper()
	if holderOf(taken) != survivor {
		t.Fatalf("Lease taken over by %q, want the survivor %s", holderOf(taken), survivor)
	}
	expired := last.Spec.RenewTime.Add(time.Duration(*last.Spec.LeaseDurationSeconds) * time.Second)
	if at := taken.Spec.AcquireTime.Time; at.Before(expired) {
		t.Fatalf("%s took the Lease at %s, before the dead holder's renewal of %s expired at %s", survivor,
			at.Format(time.StampMilli), last.Spec.RenewTime.Format(time.StampMilli), expired.Format(time.StampMilli))
	}
	if n, m := ptrOr(last.Spec.LeaseTransitions), ptrOr(taken.Spec.LeaseTransitions); m != n+1 {
		t.Fatalf("Lease transitions %d -> %d, want one more", n, m)
	}
}

func ptrTime(t time.Time) *metav1.MicroTime {
	m := metav1.NewMicroTime(t)
	return &m
}

func ptrOr(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

// holdsFor checks, every 500 ms for d, that the Lease stays with holder, without a transition since the Lease
// since, and that holder renews it (every 5 s: its last renewal is at most 10 s before the end).
func holdsFor(ctx context.Context, t *testing.T, c kubernetes.Interface, holder string, d time.Duration, since *coordinationv1.Lease) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		l := getLease(ctx, t, c)
		if holderOf(l) != holder || ptrOr(l.Spec.LeaseTransitions) != ptrOr(since.Spec.LeaseTransitions) {
			t.Fatalf("Lease now held by %q (transitions %d), want %s without a transition", holderOf(l),
				ptrOr(l.Spec.LeaseTransitions), holder)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if l := getLease(ctx, t, c); l.Spec.RenewTime.Before(ptrTime(deadline.Add(-10 * time.Second))) {
		t.Fatalf("%s did not renew the Lease: last renewal at %s, the window ended at %s", holder,
			l.Spec.RenewTime.Format(time.StampMilli), deadline.Format(time.StampMilli))
	}
}

// waitPVDeleted waits until the PV is gone.
func waitPVDeleted(ctx context.Context, t *testing.T, c kubernetes.Interface, pv *corev1.PersistentVolume, procs map[string]*binary.Keeplog) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 45*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		var logs []string
		for id, p := range procs {
			logs = append(logs, fmt.Sprintf("%s:\n%s", id, p.LogTail(20)))
		}
		t.Fatalf("PV %s not deleted: %v\n%s", pv.Name, err, strings.Join(logs, "\n"))
	}
}

// logLine is one line of keeplog's JSON log.
type logLine struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
	PV   string    `json:"pv"`
}

// logLines are the lines of p's log with message msg, from byte offset from on (the log is appended across
// restarts).
func logLines(t *testing.T, p *binary.Keeplog, from int64, msg string) []logLine {
	t.Helper()
	f, err := os.Open(p.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(from, 0); err != nil {
		t.Fatal(err)
	}
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == msg {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func logSize(t *testing.T, p *binary.Keeplog) int64 {
	t.Helper()
	fi, err := os.Stat(p.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// wantDeletedBy checks that exactly one process logged the PV's deletion, once: by; it returns when by logged it.
func wantDeletedBy(t *testing.T, procs map[string]*binary.Keeplog, pv, by string) time.Time {
	t.Helper()
	var at time.Time
	for id, p := range procs {
		n := 0
		for _, l := range logLines(t, p, 0, msgDeletedPV) {
			if l.PV == pv {
				n, at = n+1, l.Time
			}
		}
		if want := map[bool]int{true: 1, false: 0}[id == by]; n != want {
			t.Fatalf("%s logged %q for %s %d times, want %d; its log:\n%s", id, msgDeletedPV, pv, n, want, p.LogTail(30))
		}
	}
	return at
}

// wantNotLeading checks that p never logged that it leads, marked or deleted a PV (from byte offset from on).
func wantNotLeading(t *testing.T, p *binary.Keeplog, from int64) {
	t.Helper()
	for _, msg := range []string{msgLeading, msgMarkedPV, msgDeletedPV} {
		if ls := logLines(t, p, from, msg); len(ls) > 0 {
			t.Fatalf("the follower logged %q at %s (pv %q)", msg, ls[0].Time.Format(time.StampMilli), ls[0].PV)
		}
	}
}

// wantMarkedAfter checks that p marked the PV (node missing) only after it took the Lease: nobody acted between the
// kill and the takeover.
func wantMarkedAfter(t *testing.T, p *binary.Keeplog, pv string, taken time.Time) {
	t.Helper()
	for _, l := range logLines(t, p, 0, msgMarkedPV) {
		if l.PV == pv && l.Time.Before(taken) {
			t.Fatalf("%s marked at %s, before its process took the Lease at %s", pv, l.Time.Format(time.StampMilli), taken.Format(time.StampMilli))
		}
		if l.PV == pv {
			return
		}
	}
	t.Fatalf("the new leader never logged that %s's node is missing", pv)
}

// wantCleanups checks keeplog_gc_pv_cleanups_total{reason="node_gone"} on p's /metrics.
func wantCleanups(ctx context.Context, t *testing.T, p *binary.Keeplog, want float64) {
	t.Helper()
	s, err := binary.Scrape(ctx, p.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	if got := s[`keeplog_gc_pv_cleanups_total{reason="node_gone"}`]; got != want {
		t.Fatalf("keeplog_gc_pv_cleanups_total{reason=\"node_gone\"} on %s = %g, want %g", p.HTTPAddr, got, want)
	}
}

// timeline prints the hand-off's moments in order, relative to the test's start.
type timeline struct {
	t      *testing.T
	begin  time.Time
	events []event
}

type event struct {
	when time.Time
	what string
}

func (tl *timeline) at(what string, when time.Time) { tl.events = append(tl.events, event{when, what}) }

func (tl *timeline) print() {
	sort.SliceStable(tl.events, func(i, j int) bool { return tl.events[i].when.Before(tl.events[j].when) })
	for _, e := range tl.events {
		tl.t.Logf("timeline: %8s  %s", e.when.Sub(tl.begin).Round(10*time.Millisecond), e.what)
	}
}
