// Package archiver uploads finished dumps from keeplog's pod directories to
// an SFTP server: exactly once (a durable journal), verified (size and
// sha256, with a manifest), within a per-node bandwidth and concurrency limit
// and a cluster-wide concurrency limit (a Semaphore).
//
// The flow: watch (inotify through internal/fswatch + periodic rescans) → settle (no writer, stable
// for a quiet period, or the pod unpublished) → journal → upload (temporary
// name, verify, manifest, rename) → journal → status file, event, metrics.
package archiver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/fswatch"
	"github.com/keeplog/keeplog/internal/liveness"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
)

// Recorder sends what users should see on the pod as Events (*kube.Events implements it). eventType is "Normal" or
// "Warning".
type Recorder interface {
	PodEvent(pod store.PodRef, eventType, reason, message string)
}

// archivedMessage is the Archived Event's text.
func archivedMessage(it Item) string {
	if it.Compression != "" {
		return fmt.Sprintf("%s archived to %s (%d bytes, sha256 %s; stored %s: %d bytes)", it.Rel, it.Remote, it.Size, it.SHA256,
			it.Compression, it.StoredSize)
	}
	return fmt.Sprintf("%s archived to %s (%d bytes, sha256 %s)", it.Rel, it.Remote, it.Size, it.SHA256)
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
	retryEv *retryEvents // when each failing item last sent ArchiveRetrying (retryevents.go)
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
		log: deps.Log.WithName("archiver"), queue: newQueue(deps.Clock), retryEv: newRetryEvents(),
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

// MarkUnpublished tells the archiver that a pod's volume was unpublished:
// its files no longer need the quiet period (they still must not be open
// for writing), and the directory is no longer watched (retained.go).
// podDir is the pod directory's path or base name.
func (a *Archiver) MarkUnpublished(podDir string) {
	pod := filepath.Base(podDir)
	a.mu.Lock()
	a.unpublished[pod] = true
	a.unpubAt[pod] = a.clk.Now()
	a.newUnpub[pod] = true
	delete(a.newPub, pod)
	a.mu.Unlock()
	a.poke()
}

// MarkPublished tells the archiver that a pod directory's volume is published (again, after a kubelet restart
// or a pod's second volume): its files settle for the quiet period and it is watched.
func (a *Archiver) MarkPublished(podDir string) {
	pod := filepath.Base(podDir)
	a.mu.Lock()
	wasUnpublished := a.unpublished[pod]
	delete(a.unpublished, pod)
	delete(a.unpubAt, pod)
	delete(a.newUnpub, pod)
	if wasUnpublished {
		a.newPub[pod] = true
	}
	a.mu.Unlock()
	if wasUnpublished {
		a.poke()
	}
}

func (a *Archiver) isUnpublished(pod string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.unpublished[pod]
}

func (a *Archiver) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *Archiver) markDirty(pod podDir) {
	a.mu.Lock()
	a.dirty[pod] = true
	a.mu.Unlock()
	a.poke()
}

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

// worker uploads queued items one at a time until ctx ends.
func (a *Archiver) worker(ctx context.Context) {
	var conn Remote
	defer func() {
		if conn != nil {
			_ = conn.Close()
		}
	}()
	for {
		id, ok := a.queue.next(ctx)
		if !ok {
			return
		}
		it, ok := a.journal.Get(id)
		if !ok || it.State.terminal() {
			continue
		}
		conn = a.process(ctx, conn, it)
		if conn != nil && !a.queue.hasDue() {
			_ = conn.Close() // do not keep idle connections open
			conn = nil
		}
	}
}

// process makes one attempt at an item and records the outcome. It returns
// the connection to reuse (nil after a failure).
func (a *Archiver) process(ctx context.Context, conn Remote, it Item) Remote {
	ref, _ := it.podRef()
	// Before a slot is taken: the same content may be archived already.
	switch res, err := a.sameContent(ctx, &it); {
	case errors.Is(err, errIllegalTransition):
		a.journalFailed(err, "Cannot record a file with the same content as an archived one", it)
		return conn
	case err != nil:
		a.log.Error(err, "Cannot record a file with the same content as an archived one; will try again")
		a.queue.add(it.ID, a.clk.Now().Add(a.cfg.MinBackoff))
		return conn
	case res == waitForTwin:
		a.queue.add(it.ID, a.clk.Now().Add(a.cfg.MinBackoff))
		return conn
	case res == alreadyStored:
		a.afterDone(it)
		return conn
	}
	held, release, err := a.sem.Acquire(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.retry(it, fmt.Errorf("acquire upload slot: %w", err))
		}
		return conn
	}
	defer release()

	if it, err = a.journal.Start(it, a.clk.Now()); a.journalFailed(err, "Cannot record upload start", it) {
		if !errors.Is(err, errIllegalTransition) { // refused: the item is not queued any more
			a.queue.add(it.ID, a.clk.Now().Add(a.cfg.MinBackoff))
		}
		return conn
	}
	a.markDirty(it.podDir())

	if conn == nil {
		if conn, err = a.dialer.Dial(held); err != nil {
			release()
			if ctx.Err() == nil {
				a.retry(it, err)
			}
			return nil
		}
	}
	start := a.clk.Now()
	res, err := a.upload(held, conn, &it)
	release()
	now := a.clk.Now()
	sum := res.sha256
	switch {
	case err == nil:
		var perr error
		if it, perr = a.journal.Done(it, res, now); a.journalFailed(perr, "Cannot record finished upload", it) {
			// The upload is verified; without a record it is redone and
			// recognised by its manifest at the next attempt.
			if !errors.Is(perr, errIllegalTransition) {
				a.queue.add(it.ID, now.Add(a.cfg.MinBackoff))
			}
			return conn
		}
		a.m.uploads.WithLabelValues(ResultSuccess).Inc()
		a.m.duration.Observe(now.Sub(start).Seconds())
		a.log.Info("Archived", "pod", ref.String(), "file", it.Rel, "remote", it.Remote, "bytes", it.Size, "sha256", sum,
			"storedBytes", res.stored, "seconds", now.Sub(start).Seconds())
		a.rec.PodEvent(ref, "Normal", api.ReasonArchived, archivedMessage(it))
		a.afterDone(it)
		return conn
	case ctx.Err() != nil:
		// Shutting down: stays "uploading" and resumes at the next start from the journalled prefix.
		_ = conn.Close()
		return nil
	case isPermanent(err):
		var perr error
		if it, perr = a.journal.Fail(it, err, now); a.journalFailed(perr, "Cannot record failed upload", it) &&
			errors.Is(perr, errIllegalTransition) {
			return conn
		}
		a.m.uploads.WithLabelValues(ResultFailed).Inc()
		a.retryEv.forget(it.ID)
		a.log.Info("Cannot archive file; giving up", "pod", ref.String(), "file", it.Rel, "err", err.Error())
		a.rec.PodEvent(ref, "Warning", api.ReasonArchiveFailed, fmt.Sprintf("%s cannot be archived: %v", it.Rel, err))
		a.markDirty(it.podDir())
		return conn
	default:
		_ = conn.Close()
		a.retry(it, err)
		return nil
	}
}

// afterDone deletes the local file of a done item (deleteAfterUpload) and updates the status.
func (a *Archiver) afterDone(it Item) {
	a.retryEv.forget(it.ID)
	if it.DeleteAfterUpload {
		a.deleteLocal(it)
	}
	a.markDirty(it.podDir())
}

// retry records a failed attempt and schedules the next one. The ArchiveRetrying Event goes out at the first
// failure, when the error changes, and again every retryEventInterval while the same error persists.
func (a *Archiver) retry(it Item, err error) {
	ref, _ := it.podRef()
	now := a.clk.Now()
	it, perr := a.journal.Retry(it, err, now)
	delay := backoff(it.Attempts, a.cfg.MinBackoff, a.cfg.MaxBackoff, nil)
	if a.journalFailed(perr, "Cannot record upload retry", it) && errors.Is(perr, errIllegalTransition) {
		a.retryEv.forget(it.ID)
		return // not queued or uploading any more: nothing to retry
	}
	a.m.uploads.WithLabelValues(ResultRetry).Inc()
	a.log.Info("Upload failed; will retry", "pod", ref.String(), "file", it.Rel, "attempt", it.Attempts, "retryIn", delay, "err", err.Error())
	if a.retryEv.due(it.ID, err, now) {
		a.rec.PodEvent(ref, "Warning", api.ReasonArchiveRetrying, retryingMessage(it, err))
	}
	a.queue.add(it.ID, now.Add(delay))
	a.markDirty(it.podDir())
}

// deleteLocal removes an archived file (deleteAfterUpload) if it is still
// the same file, and records that. A deletion refused for permission (EPERM:
// the volume is blocked over its limit with the immutable attribute) is tried
// again each time a scan sees the file, with one Event; any other failure
// (the file was replaced meanwhile) gives up.
func (a *Archiver) deleteLocal(it Item) {
	err := a.fs.remove(it.PodDir, it.Rel, it.Ino)
	ref, _ := it.podRef()
	deleted, errMsg := it.Deleted, it.Error
	switch {
	case err == nil || errors.Is(err, fs.ErrNotExist):
		deleted, errMsg = true, ""
	case errors.Is(err, fs.ErrPermission):
		first := it.Error == ""
		errMsg = "delete after upload: " + err.Error()
		a.log.Info("Cannot delete archived file yet; retried at the next scan", "podDir", it.PodDir, "file", it.Rel, "err", err.Error())
		if first {
			a.rec.PodEvent(ref, "Warning", api.ReasonArchiveFailed, fmt.Sprintf("%s was archived but cannot be deleted yet (retried at each scan): %v", it.Rel, err))
		}
	default:
		a.log.Info("Cannot delete archived file", "podDir", it.PodDir, "file", it.Rel, "err", err.Error())
		a.rec.PodEvent(ref, "Warning", api.ReasonArchiveFailed, fmt.Sprintf("%s was archived but cannot be deleted: %v", it.Rel, err))
		deleted = true
	}
	if _, err := a.journal.Deleted(it, deleted, errMsg, a.clk.Now()); err != nil {
		a.journalFailed(err, "Cannot record deletion", it)
	}
	a.markDirty(it.podDir())
}

// targetName describes the archive target without credentials: the dialer's own description (an S3 target's)
// when it has one, else the SFTP Target's.
func (a *Archiver) targetName() string {
	if s, ok := a.dialer.(fmt.Stringer); ok {
		return s.String()
	}
	return a.cfg.Target.String()
}
