package fstest

import (
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/fswatch"
)

// TempWatch counts the upload temporaries live at once in a set of server directories, from inotify events (a
// temporary is created when an upload starts and renamed away or removed when it ends): Peak > 1 means two uploads
// at once. It reads the events through internal/fswatch, in batches of up to fswatch.Coalesce: names in the order
// they were first seen, so an upload that starts while another is live is counted as overlapping it; a temporary
// created and gone within one batch counts as live at its creation only. The count can be low, never high, and a
// control run (two slots: Peak >= 2) shows the check sees overlaps.
type TempWatch struct {
	w      *fswatch.Watcher
	isTemp func(base string) bool
	stop   chan struct{}
	done   chan struct{}

	mu   sync.Mutex
	live map[string]bool
	rep  TempReport
}

// TempReport is what a TempWatch saw.
type TempReport struct {
	// Peak is the most temporaries live at once; Seen how many were created.
	Peak, Seen int
	// Overlaps describes each moment two or more were live; Timeline every start and end.
	Overlaps, Timeline []string
	// Lost is true when events were lost (a kernel queue overflow): Peak and Seen are then lower bounds.
	Lost bool
}

// WatchTemps starts watching dirs (which must exist) for files whose base name isTemp says is an upload temporary.
func WatchTemps(dirs []string, isTemp func(base string) bool) (*TempWatch, error) {
	w, err := fswatch.New(clock.RealClock{}, nil)
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			w.Close()
			return nil, err
		}
	}
	tw := &TempWatch{w: w, isTemp: isTemp, stop: make(chan struct{}), done: make(chan struct{}), live: map[string]bool{}}
	go tw.run()
	return tw, nil
}

func (tw *TempWatch) run() {
	defer close(tw.done)
	for {
		select {
		case <-tw.w.Ready():
			tw.handle(tw.w.Take())
		case <-tw.stop:
			tw.handle(tw.w.Take())
			return
		}
	}
}

func (tw *TempWatch) handle(b fswatch.Batch) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	tw.rep.Lost = tw.rep.Lost || b.Overflow
	now := time.Now().Format("15:04:05.000 ")
	for i, name := range b.Names {
		base := filepath.Base(name)
		if !tw.isTemp(base) {
			continue
		}
		if b.Ops[i].Has(fswatch.Create) {
			tw.live[name] = true
			tw.rep.Seen++
			tw.rep.Timeline = append(tw.rep.Timeline, now+"start "+base)
			if len(tw.live) > 1 {
				var names []string
				for n := range tw.live {
					names = append(names, filepath.Base(n))
				}
				tw.rep.Overlaps = append(tw.rep.Overlaps, now+strings.Join(names, " + "))
			}
			tw.rep.Peak = max(tw.rep.Peak, len(tw.live))
		}
		if b.Ops[i].Has(fswatch.Rename|fswatch.Remove) && tw.live[name] {
			tw.rep.Timeline = append(tw.rep.Timeline, now+"end   "+base)
			delete(tw.live, name)
		}
	}
}

// Stop ends the watch, after the events of the last fswatch.Coalesce have been read, and reports.
func (tw *TempWatch) Stop() TempReport {
	time.Sleep(2 * fswatch.Coalesce)
	close(tw.stop)
	<-tw.done
	tw.w.Close()
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return tw.rep
}
