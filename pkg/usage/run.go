package usage

import (
	"context"
	"fmt"
	"time"

	"github.com/keeplog/keeplog/internal/fswatch"
)

// Run measures every volume, then keeps the accounting current and the limits enforced until ctx ends.
func (t *Tracker) Run(ctx context.Context) error {
	stop, err := t.start(ctx)
	if err != nil {
		return err
	}
	defer stop()
	t.deps.Log.Info("Usage tracking started", "volumes", len(t.vols), "podDirectories", len(t.dirs),
		"updateInterval", t.cfg.UpdateInterval, "walkInterval", t.cfg.WalkInterval, "enforcer", t.enforcerName())
	update := time.NewTicker(t.cfg.UpdateInterval)
	defer update.Stop()
	heartbeat := time.NewTicker(t.deps.Live.Heartbeat())
	defer heartbeat.Stop()
	// The next walk is due WalkInterval after the previous one ended, never while it runs: a walk that takes
	// longer than the interval is not followed by another at once.
	walk := time.NewTimer(t.cfg.WalkInterval)
	defer walk.Stop()
	for {
		t.deps.Live.Progress()
		select {
		case <-ctx.Done():
			return nil
		case <-heartbeat.C:
		case <-update.C:
			// Events wait in the watcher until the tick (fswatch collects them, each name once): a file written
			// a thousand times a second wakes this loop once per interval, not per write.
			t.update(ctx)
			if t.takeRewalk() {
				if err := t.walkAll(ctx); err != nil {
					return err
				}
			}
			t.evaluate()
		case <-walk.C:
			if err := t.periodicWalk(ctx); err != nil {
				return err
			}
			t.evaluate()
			walk.Reset(t.cfg.WalkInterval)
		}
	}
}

// start watches the root, subscribes to the store's record changes, measures everything and takes over a previous
// run's blocks. stop ends the subscription and the watcher.
func (t *Tracker) start(ctx context.Context) (stop func(), err error) {
	w, err := fswatch.New(t.deps.Clock, nil)
	if err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	if err := w.Add(t.root); err != nil {
		w.Close()
		return nil, fmt.Errorf("usage: watch %s: %w", t.root, err)
	}
	t.w = w
	cancel := t.deps.Store.Subscribe(t.records.note)
	stop = func() { cancel(); w.Close() }
	if err := t.walkAll(ctx); err != nil {
		stop()
		return nil, err
	}
	t.adoptBlocks()
	t.mu.Lock()
	t.started = true
	t.mu.Unlock()
	t.evaluate()
	return stop, nil
}

// takeRewalk reports and clears the need for a full walk (events were lost).
func (t *Tracker) takeRewalk() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.rewalk
	t.rewalk = false
	return r
}

// flush applies pending events and checks the limits now (tests use it instead of waiting for the ticker).
func (t *Tracker) flush(ctx context.Context) {
	t.update(ctx)
	if t.takeRewalk() {
		_ = t.walkAll(ctx)
	}
	t.evaluate()
}
