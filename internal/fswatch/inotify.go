package fswatch

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/liveness"
)

// watchMask is what a watch reports: fsnotify's default set. IN_ONLYDIR and IN_DONT_FOLLOW: only a directory is
// ever watched, and a path swapped for a symlink is not followed.
const watchMask = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_DELETE | unix.IN_DELETE_SELF | unix.IN_MOVED_FROM |
	unix.IN_MOVED_TO | unix.IN_MOVE_SELF | unix.IN_ATTRIB | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW

// watch is one watched directory: its path when it was added, and its inode then (an IN_MOVE_SELF read after the
// directory was added again at its new path, by a walk that found it there, must not remove that new watch).
type watch struct {
	wd       int32
	path     string
	dev, ino uint64
}

// Add watches a directory (not following a symlink); it never waits for the reader or the consumer. A directory
// already watched under another path (renamed) is reported under path from now on.
func (w *Watcher) Add(path string) error {
	path = filepath.Clean(path)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd < 0 {
		return errors.New("fswatch: watcher closed")
	}
	wd, err := unix.InotifyAddWatch(w.fd, path, watchMask)
	if err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		st = unix.Stat_t{} // gone already: its IN_DELETE_SELF or IN_MOVE_SELF removes the watch
	}
	if old := w.watches[int32(wd)]; old != nil {
		delete(w.paths, old.path)
	}
	if old := w.paths[path]; old != nil && old.wd != int32(wd) {
		delete(w.watches, old.wd) // the path names another directory now; the old one's watch goes with it
		_, _ = unix.InotifyRmWatch(w.fd, uint32(old.wd))
	}
	wt := &watch{wd: int32(wd), path: path, dev: uint64(st.Dev), ino: st.Ino}
	w.watches[wt.wd], w.paths[path] = wt, wt
	return nil
}

// Remove drops a directory's watch; it never waits for the reader or the consumer. ErrNotWatched when it has none.
func (w *Watcher) Remove(path string) error {
	path = filepath.Clean(path)
	w.mu.Lock()
	defer w.mu.Unlock()
	wt := w.paths[path]
	if wt == nil || w.fd < 0 {
		return fmt.Errorf("%w: %s", ErrNotWatched, path)
	}
	w.forget(wt)
	if _, err := unix.InotifyRmWatch(w.fd, uint32(wt.wd)); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unwatch %s: %w", path, err) // EINVAL: the kernel dropped it already (deleted)
	}
	return nil
}

// WatchList returns the paths watched now (tests check what is, and is not, watched).
func (w *Watcher) WatchList() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.paths))
	for p := range w.paths {
		out = append(out, p)
	}
	return out
}

// forget drops a watch from the tables (w.mu held).
func (w *Watcher) forget(wt *watch) {
	if w.watches[wt.wd] == wt {
		delete(w.watches, wt.wd)
	}
	if w.paths[wt.path] == wt {
		delete(w.paths, wt.path)
	}
}

// read is the reader goroutine. Idle, it waits in poll(2) until events are queued; then, while they keep coming, it
// reads them every Coalesce without waiting in a system call (a goroutine blocked in one makes the runtime's sysmon
// take its P back and spin up again, dozens of wake-ups each time), until a pause brings nothing.
func (w *Watcher) read(progress *liveness.Loop) {
	defer close(w.done)
	heartbeat := int(progress.Heartbeat() / time.Millisecond)
	buf := make([]byte, 64<<10)
	pause := time.NewTimer(time.Hour)
	pause.Stop()
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}, {Fd: int32(w.wake), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, heartbeat)
		progress.Progress()
		switch {
		case errors.Is(err, unix.EINTR) || n == 0:
			continue
		case err != nil:
			w.mu.Lock()
			w.fail(fmt.Errorf("poll inotify: %w", err))
			w.mu.Unlock()
			w.signal()
			time.Sleep(Coalesce) // never spin
			continue
		case fds[1].Revents != 0:
			return
		}
		for {
			// The pause ends on a multiple of Coalesce of the clock, so a process's watchers wake together; it
			// is never longer than Coalesce, whatever the wall clock does.
			pause.Reset(Coalesce - time.Duration(time.Now().UnixNano()%int64(Coalesce)))
			select {
			case <-pause.C:
			case <-w.stop:
				return
			}
			progress.Progress()
			if w.drain(buf) == 0 {
				break
			}
		}
	}
}

// drain reads everything the kernel queued, records it and returns how many bytes it read.
func (w *Watcher) drain(buf []byte) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	total := 0
	for {
		n, err := unix.Read(w.fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) || n == 0 {
			break
		}
		if err != nil {
			w.fail(fmt.Errorf("read inotify: %w", err))
			break
		}
		total += n
		w.parse(buf[:n])
	}
	if len(w.order) > 0 || w.overflow || w.errs > 0 {
		w.signal()
	}
	return total
}

// parse records the events in b (whole events: the kernel never splits one across reads) (w.mu held).
func (w *Watcher) parse(b []byte) {
	for off := 0; off+unix.SizeofInotifyEvent <= len(b); {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[off]))
		nameAt := off + unix.SizeofInotifyEvent
		off = nameAt + int(ev.Len)
		if off > len(b) {
			w.fail(errors.New("inotify: short read"))
			return
		}
		name := ""
		if ev.Len > 0 {
			raw := b[nameAt:off]
			for i, c := range raw { // NUL-padded
				if c == 0 {
					raw = raw[:i]
					break
				}
			}
			name = string(raw)
		}
		w.event(ev.Wd, ev.Mask, name)
	}
}

// event records one inotify event, with fsnotify's meaning for each mask (w.mu held).
func (w *Watcher) event(wd int32, mask uint32, name string) {
	if mask&unix.IN_Q_OVERFLOW != 0 {
		w.overflow = true
		return
	}
	wt := w.watches[wd]
	if wt == nil {
		return // removed meanwhile: nobody asks about it any longer
	}
	if mask&(unix.IN_IGNORED|unix.IN_UNMOUNT) != 0 {
		w.forget(wt) // the kernel dropped the watch (deleted, unmounted, or removed)
		return
	}
	path := wt.path
	if name != "" {
		path += "/" + name
	}
	switch {
	case mask&unix.IN_DELETE_SELF != 0:
		w.forget(wt)
		if _, parentWatched := w.paths[filepath.Dir(wt.path)]; parentWatched {
			return // the parent's IN_DELETE says it already
		}
	case mask&unix.IN_MOVE_SELF != 0:
		// The directory is elsewhere now, and its watch reports it under a path that names something else (or
		// nothing): drop it, unless it was added again at its new path since (same inode there).
		var st unix.Stat_t
		if unix.Lstat(wt.path, &st) != nil || uint64(st.Dev) != wt.dev || st.Ino != wt.ino || wt.ino == 0 {
			w.forget(wt)
			_, _ = unix.InotifyRmWatch(w.fd, uint32(wt.wd))
		}
	}
	w.add(path, opOf(mask))
}

// opOf is the Op for an inotify mask.
func opOf(mask uint32) Op {
	var op Op
	if mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 {
		op |= Create
	}
	if mask&(unix.IN_DELETE|unix.IN_DELETE_SELF) != 0 {
		op |= Remove
	}
	if mask&unix.IN_MODIFY != 0 {
		op |= Write
	}
	if mask&(unix.IN_MOVED_FROM|unix.IN_MOVE_SELF) != 0 {
		op |= Rename
	}
	if mask&unix.IN_ATTRIB != 0 {
		op |= Chmod
	}
	return op
}
