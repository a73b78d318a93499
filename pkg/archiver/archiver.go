package archiver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/fswatch"
	"github.com/keeplog/keeplog/internal/liveness"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
)

// Recorder sends what users should see on the pod as Events (*kube.Events implements it). eventType is "Normal" or
// "Warning".
type Recorder interface {
	PodEvent(pod store.PodRef, eventType, reason, message string)
}

// Deps are the archiver's side effects, all injected.
type Deps struct {
	// Root is the directory holding the pod directories.
	Root string
	// StateDir holds the journal (e.g. <root>/.keeplog/archiver).
	StateDir string
	// Clock; the real clock when nil.
	Clock clock.Clock
	// Dialer connects to the archive server (NewSSHDialer). Required.
	Dialer Dialer
	// Recorder receives events; none are sent when nil.
	Recorder Recorder
	// Registerer gets the metrics; none are registered when nil.
	Registerer prometheus.Registerer
	// Semaphore bounds uploads cluster-wide; no cluster limit when nil.
	Semaphore Semaphore
	// Policy gives a pod directory's policy (argument: its base name,
	// "<ns>_<pod>_<uid>"). Default patterns, nothing else, when nil.
	Policy func(podDir string) policy.ArchivePolicy
	// Writers finds files open for writing; ProcFS{} when nil.
	Writers WriterChecker
	// Log; discarded when zero.
	Log logr.Logger
	// Liveness gets the archiver's loops ("archiver" and "archiver-watch"); none are checked when nil.
	Liveness *liveness.Registry
	// Retained says whether a pod directory (base name) is unpublished according to keeplog's records; asked at
	// start, for the pod directories a restarted keeplog was not told of (retained.go). Every one is taken as
	// published when nil.
	Retained func(podDir string) bool
}

// Archiver is the node's archiver. Create it with New, run it with Run.
type Archiver struct {
	cfg     Config
	clk     clock.Clock
	fs      *podFS
	journal *Journal
	m       *metrics
	limiter *rate.Limiter
	dialer  Dialer
	rec     Recorder
	sem     Semaphore
	policy  func(string) policy.ArchivePolicy
	writers WriterChecker
	log     logr.Logger
	queue   *queue
	retryEv *retryEvents // the ArchiveRetrying Events of the last 30 min (retryevents.go)
	running atomic.Bool
	loop    *liveness.Loop // the main loop's progress
	drain   *liveness.Loop // the watch drain goroutine's progress

	isRetained func(string) bool

	mu          sync.Mutex
	unpublished map[string]bool
	unpubAt     map[string]time.Time // when this process was told of the unpublish
	newUnpub    map[string]bool      // unpublished since the main loop last looked
	newPub      map[string]bool      // published again since the main loop last looked
	wantScan    map[string]bool      // unpublished pod directories Archived found a file in that is not journalled
	dirty       map[podDir]bool
	wake        chan struct{} // something for the main loop: publish, unpublish, a scan asked for, or dirty status

	// Main loop only.
	scan       *writerScan // a search for writers that outlived WriterScanTimeout, until it returns
	seeded     bool        // the first rescan has asked Deps.Retained
	settler    *settler
	rejected   map[podDir]map[string]string
	watched    map[podDir]map[string]bool // pod directory → the directories inside it that are watched ("" itself)
	known      map[string]podDir          // the watched pod directories by name: discover's shortcut
	nextScan   map[string]time.Time       // unpublished pod directory (name: 10,000 on a busy node) → when a rescan walks it next (retained.go)
	statusSums map[podDir][32]byte        // what each pod directory's status file says now (all but its time)
}

// New checks the configuration, opens the journal and registers metrics.
// Nothing runs until Run.
func New(cfg Config, deps Deps) (*Archiver, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Dialer == nil {
		return nil, errors.New("archiver: Deps.Dialer is required")
	}
	if deps.StateDir == "" {
		return nil, errors.New("archiver: Deps.StateDir is required")
	}
	pfs, err := newPodFS(deps.Root)
	if err != nil {
		return nil, fmt.Errorf("archiver: %w", err)
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	if deps.Writers == nil {
		deps.Writers = ProcFS{}
	}
	if deps.Semaphore == nil {
		deps.Semaphore = NewLocalSemaphore(cfg.MaxConcurrentUploads)
	}
	if deps.Policy == nil {
		deps.Policy = func(string) policy.ArchivePolicy { return policy.ArchivePolicy{} }
	}
	if deps.Recorder == nil {
		deps.Recorder = nopRecorder{}
	}
	j, warnings, err := OpenJournal(deps.StateDir)
	if err != nil {
		return nil, fmt.Errorf("archiver: %w", err)
	}
	for _, w := range warnings {
		deps.Log.Error(w, "Archive journal entry dropped; its file will be found again")
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	return &Archiver{
		cfg: cfg, clk: deps.Clock, fs: pfs, journal: j, m: m, limiter: newLimiter(cfg.BytesPerSecond),
		dialer: deps.Dialer, rec: deps.Recorder, sem: deps.Semaphore, policy: deps.Policy, writers: deps.Writers,
		log: deps.Log.WithName("archiver"), queue: newQueue(deps.Clock), retryEv: newRetryEvents(deps.Clock),
		loop: deps.Liveness.Loop("archiver", cfg.LoopBound), drain: deps.Liveness.Loop("archiver-watch", cfg.LoopBound),
		isRetained: deps.Retained, unpublished: map[string]bool{}, unpubAt: map[string]time.Time{},
		newUnpub: map[string]bool{}, newPub: map[string]bool{}, wantScan: map[string]bool{}, dirty: map[podDir]bool{},
		wake: make(chan struct{}, 1), settler: newSettler(cfg.QuietPeriod), rejected: map[podDir]map[string]string{},
		watched: map[podDir]map[string]bool{}, known: map[string]podDir{}, nextScan: map[string]time.Time{},
		statusSums: map[podDir][32]byte{},
	}, nil
}

type nopRecorder struct{}

func (nopRecorder) PodEvent(store.PodRef, string, string, string) {}

// Run archives until ctx ends, then stops: uploads in flight are
// interrupted (they resume at the next start from the acknowledged prefix the journal holds). It returns nil
// after a clean stop, or an error if it cannot start.
func (a *Archiver) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("archiver: Run called twice")
	}
	w, err := fswatch.New(a.clk, a.drain)
	if err != nil {
		return fmt.Errorf("archiver: %w", err)
	}
	defer w.Close()
	if err := w.Add(a.fs.root); err != nil {
		return fmt.Errorf("archiver: watch %s: %w", a.fs.root, err)
	}

	a.recover()
	a.rescan(w)

	var wg sync.WaitGroup
	for i := 0; i < a.cfg.MaxConcurrentUploads; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.worker(ctx)
		}()
	}
	a.log.Info("Archiver started", "root", a.fs.root, "target", a.targetName(), "node", a.cfg.NodeName,
		"quietPeriod", a.cfg.QuietPeriod, "bytesPerSecond", a.cfg.BytesPerSecond, "maxConcurrentUploads", a.cfg.MaxConcurrentUploads)

	heartbeat := a.clk.After(a.loop.Heartbeat())
	rescan := a.clk.After(a.cfg.RescanInterval)
	var poll <-chan time.Time // armed only while files settle: an idle archiver does not wake to poll nothing
loop:
	for {
		if poll == nil && len(a.settler.files) > 0 {
			poll = a.clk.After(a.cfg.PollInterval)
		}
		select {
		case <-ctx.Done():
			break loop
		case <-w.Ready():
			a.handleBatch(w, w.Take())
		case <-poll:
			poll = nil
			a.poll()
		case <-rescan:
			a.rescan(w)
			rescan = a.clk.After(a.cfg.RescanInterval)
		case <-heartbeat:
			heartbeat = a.clk.After(a.loop.Heartbeat())
		case <-a.wake:
			a.handleWake(w)
		}
		a.flushStatus()
		a.loop.Progress()
	}
	wg.Wait()
	a.flushStatus()
	a.log.Info("Archiver stopped")
	return nil
}

// flushStatus writes the status files of pods whose state changed.
func (a *Archiver) flushStatus() {
	a.mu.Lock()
	pods := a.dirty
	a.dirty = map[podDir]bool{}
	a.mu.Unlock()
	for p := range pods {
		a.writeStatus(p)
	}
	a.m.queueDepth.Set(float64(a.journal.active()))
	a.m.settling.Set(float64(len(a.settler.files)))
}

// recover re-queues what a previous run left unfinished and finishes
// deletions that were interrupted.
func (a *Archiver) recover() {
	now := a.clk.Now()
	for _, it := range a.journal.Items() {
		switch {
		case !it.State.terminal():
			a.queue.add(it.ID, now)
		case it.State == StateDone && it.DeleteAfterUpload && !it.Deleted:
			a.deleteLocal(it)
		}
	}
}

// targetName describes the archive target without credentials: the dialer's own description (an S3 target's)
// when it has one, else the SFTP Target's.
func (a *Archiver) targetName() string {
	if s, ok := a.dialer.(fmt.Stringer); ok {
		return s.String()
	}
	return a.cfg.Target.String()
}
