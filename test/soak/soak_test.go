//go:build soak

package soak

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keeplog/keeplog/test/binary"
	"github.com/keeplog/keeplog/test/e2e/framework"
	"github.com/keeplog/keeplog/test/e2e/lab"
)

// statusFilesFromEnv is where the archiver's status file lives inside a pod directory: today
// .keeplog-archive-status.json, after issue 12 .keeplog/archive-status.json. Both are watched (a rewrite of either
// is a rewrite), and KEEPLOG_SOAK_STATUS_FILES (comma-separated) replaces the list.
func statusFilesFromEnv() []string {
	if v := os.Getenv("KEEPLOG_SOAK_STATUS_FILES"); v != "" {
		return strings.Split(v, ",")
	}
	return []string{".keeplog-archive-status.json", ".keeplog/archive-status.json"}
}

// soakEnv is one soak run: keeplog, its CSI client, the SFTP server, the pollers and the workload.
type soakEnv struct {
	t           *testing.T
	plan        plan
	work        string
	kl          *binary.Keeplog
	csi         *binary.CSI
	sftp        *framework.SFTP
	health      *binary.Health
	load        *workload
	statusFiles []string

	nodes   *nodeWatch  // IN_OPEN on every device and FIFO swapped in
	mounted []*mountPod // the pod directories holding a bind mount (archived, and not)

	kills, sshdRestarts int
	chaosErr            error
	retained            retainedWatches // the watches seen in retained pod directories
}

func TestSoak(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatalf("the soak must run as root (keeplog bind-mounts; sshdtest adds a user)")
	}
	s := &soakEnv{t: t, plan: planFromEnv(), statusFiles: statusFilesFromEnv()}
	s.load = &workload{s: s}
	t.Logf("soak %s: work %s, settle ≤ %s, idle %s, %d workers, %d keeplog kills, 1 sshd restart, retention %s",
		s.plan.name, s.plan.work, s.plan.settle, s.plan.idle, s.plan.workers, s.plan.kills, s.plan.retainFor)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.start(ctx)

	begin := time.Now()
	s.runWork(ctx)
	t.Logf("work done after %s: %d pods", time.Since(begin).Round(time.Second), len(s.load.snapshot()))
	settled := s.settle(ctx)
	t.Logf("settled after %s (all archived and deleted: %v)", time.Since(begin).Round(time.Second), settled)
	probe := s.probe(ctx)
	if !probe.ok {
		s.restartWedged(ctx)
	}
	idle := s.measureIdle(ctx)
	s.checkInvariants(idle, probe)
}

// start brings up sshd, keeplog and the pollers; cleanups stop them by PID and unmount what is left.
func (s *soakEnv) start(ctx context.Context) {
	t := s.t
	var err error
	s.sftp = framework.StartSFTP(t)
	if s.work, err = os.MkdirTemp("", "keeplog-soak-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.removeWork)
	if s.nodes, err = newNodeWatch(s.work); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.nodes.Close)
	s.kl, err = binary.StartKeeplog(ctx, binary.Config{WorkDir: s.work, ArchiveTarget: s.sftp.TargetDir, Args: append([]string{
		"--archive-quiet-period=2s", "--retain-for=" + s.plan.retainFor.String(), "--gc-interval=2s",
	}, logArgs...)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.kl.Stop(); err != nil {
			t.Errorf("stop keeplog: %v", err)
		}
	})
	if s.csi, err = binary.DialCSI(s.kl.Socket); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.csi.Close() })
	t.Cleanup(s.unpublishAll) // runs before keeplog stops
	s.health = binary.NewHealth(s.kl.HTTPAddr)
	go s.health.Run(ctx)
	go s.trackVanish(ctx)
	go s.watchRetained(ctx)
}

// runWork runs the workers, the resident pods and the chaos (kills, sshd restart) for plan.work.
func (s *soakEnv) runWork(ctx context.Context) {
	end := time.Now().Add(s.plan.work)
	var wg sync.WaitGroup
	errs := make(chan error, s.plan.workers+2)
	wg.Add(2)
	go func() { defer wg.Done(); errs <- s.residents(ctx) }()
	go func() { defer wg.Done(); errs <- s.holdMounts(ctx) }()
	for i := range s.plan.workers {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- s.load.worker(ctx, uint64(i+1)*7919, end) }()
	}
	chaosDone := make(chan struct{})
	go func() { defer close(chaosDone); s.chaos(ctx, end) }()
	wg.Wait()
	<-chaosDone
	close(errs)
	for err := range errs {
		if err != nil {
			s.t.Fatalf("workload: %v\nkeeplog's log:\n%s", err, s.kl.LogTail(30))
		}
	}
	if s.chaosErr != nil {
		s.t.Fatalf("chaos: %v", s.chaosErr)
	}
}

// residents are three pods published for the whole run, each with one small dump: once it is archived their
// directories hold a status file and nothing to do, which is what idle must look like. Each also gets a device or
// FIFO swapped in for a second, settled dump, which stays there, unopened, through the idle window.
func (s *soakEnv) residents(ctx context.Context) error {
	rng := newRand(424242)
	for i := range 3 {
		p, err := s.load.newPod(ctx, rng, true)
		if err != nil {
			return err
		}
		if err := s.load.writeDump(rng, p, i, 2); err != nil {
			return err
		}
		if err := s.load.swapDump(rng, p, nodeKind(i%2)); err != nil {
			return err
		}
	}
	return nil
}

// chaos SIGKILLs keeplog plan.kills times, evenly over the work, and stops sshd for 10 s at 40 %.
func (s *soakEnv) chaos(ctx context.Context, end time.Time) {
	begin := time.Now()
	total := end.Sub(begin)
	type event struct {
		at   time.Duration
		sshd bool
	}
	var evs []event
	for i := 1; i <= s.plan.kills; i++ {
		evs = append(evs, event{at: total * time.Duration(i) / time.Duration(s.plan.kills+1)})
	}
	evs = append(evs, event{at: total * 2 / 5, sshd: true})
	for len(evs) > 0 {
		next := 0
		for i := range evs {
			if evs[i].at < evs[next].at {
				next = i
			}
		}
		ev := evs[next]
		evs = append(evs[:next], evs[next+1:]...)
		sleep(ctx, time.Until(begin.Add(ev.at)))
		if ctx.Err() != nil {
			return
		}
		if ev.sshd {
			s.sftp.Server.Stop()
			s.t.Logf("%s sshd stopped", time.Since(begin).Round(time.Second))
			sleep(ctx, 10*time.Second)
			s.sftp.Server.Start()
			s.sshdRestarts++
			s.t.Logf("%s sshd started again", time.Since(begin).Round(time.Second))
			continue
		}
		if err := s.killKeeplog(ctx); err != nil {
			s.chaosErr = err
			return
		}
		s.t.Logf("%s keeplog SIGKILLed and restarted (pid %d)", time.Since(begin).Round(time.Second), s.kl.Pid())
	}
}

// killKeeplog SIGKILLs keeplog and starts it again a second later; /healthz is not counted meanwhile.
func (s *soakEnv) killKeeplog(ctx context.Context) error {
	if s.kl.Exited() {
		return fmt.Errorf("keeplog exited by itself; its log:\n%s", s.kl.LogTail(40))
	}
	s.health.Pause()
	defer s.health.Resume()
	if err := s.kl.Kill(); err != nil {
		return err
	}
	s.kills++
	sleep(ctx, time.Second)
	return s.kl.Start(ctx)
}

// restartWedged restarts a keeplog whose archiver saw nothing new, as kubelet's liveness probe would once /healthz
// fails, and waits until the restart's rescan is done (the probe's dump archived, or 60 s): the idle window must
// show what a working archiver does while idle, not what a wedged one does not.
func (s *soakEnv) restartWedged(ctx context.Context) {
	s.health.Pause()
	defer s.health.Resume()
	if err := s.kl.Stop(); err != nil {
		s.t.Fatalf("stop the wedged keeplog: %v", err)
	}
	if err := s.kl.Start(ctx); err != nil {
		s.t.Fatalf("restart keeplog: %v", err)
	}
	s.t.Logf("keeplog restarted before the idle window (its archiver saw nothing new)")
	deadline := time.Now().Add(60 * time.Second)
	for _, p := range s.load.snapshot() {
		for p.resident && len(s.missingOnServer(p)) > 0 && time.Now().Before(deadline) {
			sleep(ctx, 500*time.Millisecond)
		}
	}
	sleep(ctx, 5*time.Second)
}

// settle waits until every unpublished directory is gone and every resident's dump is on the server, at most
// plan.settle.
func (s *soakEnv) settle(ctx context.Context) bool {
	deadline := time.Now().Add(s.plan.settle)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		done := true
		for _, p := range s.load.snapshot() {
			s.load.mu.Lock()
			gone := !p.vanishedAt.IsZero()
			s.load.mu.Unlock()
			if (!p.resident && !p.holdsMount && !gone) || (p.resident && len(s.missingOnServer(p)) > 0) {
				done = false
				break
			}
		}
		if done {
			return true
		}
		sleep(ctx, time.Second)
	}
	return false
}

// unpublishAll unpublishes the pods still published (the residents, or all after a failure).
func (s *soakEnv) unpublishAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, p := range s.load.snapshot() {
		if p.unpublishedAt.IsZero() {
			if err := s.load.unpublish(ctx, p); err != nil {
				s.t.Errorf("cleanup: %v", err)
			}
		}
	}
}

// removeWork unmounts what is still mounted under the work directory (reported: CSI should have unmounted it)
// and removes it; with a mount left it removes nothing.
func (s *soakEnv) removeWork() {
	mounts, err := lab.MountsUnder(s.work)
	if err != nil {
		s.t.Errorf("mounts under %s: %v", s.work, err)
		return
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		s.t.Errorf("still mounted after the soak: %s", mounts[i])
		if err := syscall.Unmount(mounts[i], 0); err != nil {
			s.t.Errorf("unmount %s: %v", mounts[i], err)
		}
	}
	if left, _ := lab.MountsUnder(s.work); len(left) > 0 {
		s.t.Errorf("not removing %s: still mounted: %v", s.work, left)
		return
	}
	if os.Getenv("KEEPLOG_SOAK_KEEP") != "" {
		s.t.Logf("keeping %s (KEEPLOG_SOAK_KEEP)", s.work)
		return
	}
	if s.t.Failed() { // the log explains the failure; the dumps are only bulk
		kept := filepath.Join(os.TempDir(), "keeplog-soak-last.log")
		if err := os.Rename(filepath.Join(s.work, "keeplog.log"), kept); err == nil {
			s.t.Logf("keeplog's log kept in %s", kept)
		}
	}
	_ = os.RemoveAll(s.work)
}
