package archiver

import (
	"errors"
	"fmt"
)

// errScanPending: a search for writers that timed out has not returned yet.
var errScanPending = errors.New("a search for processes writing files that timed out has not returned yet")

// writerScan is one search for writers running in its own goroutine.
type writerScan struct {
	done chan struct{}
	open map[FileID]bool
	err  error
}

// openForWriting asks the WriterChecker, for at most WriterScanTimeout: /proc/<pid>/fd of every process is stat-ed,
// and a stat of a file on a hung network filesystem never returns. A search that times out is left running (no new
// one starts before it returns; its answer, for older files, is dropped) and the files stay settling, so the main
// loop goes on with events, rescans, uploads and status files.
func (a *Archiver) openForWriting(ids map[FileID]bool) (map[FileID]bool, error) {
	if a.scan != nil {
		select {
		case <-a.scan.done:
			a.log.Info("The search for processes writing files returned again")
			a.scan = nil
		default:
			return nil, errScanPending
		}
	}
	s := &writerScan{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.open, s.err = a.writers.OpenForWriting(ids)
	}()
	t := a.clk.NewTimer(a.cfg.WriterScanTimeout)
	defer t.Stop()
	select {
	case <-s.done:
		return s.open, s.err
	case <-t.C():
		a.scan = s
		return nil, fmt.Errorf("the search for processes writing files takes more than %s (a hung filesystem?); files wait until it returns", a.cfg.WriterScanTimeout)
	}
}
