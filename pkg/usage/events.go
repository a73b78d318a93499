package usage

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/keeplog/keeplog/internal/fswatch"
	"github.com/keeplog/keeplog/pkg/api"
)

// update applies what changed since the last call: the volumes whose records the store changed, then the paths the
// watcher named. It holds the lock only to move state, never across a watch's Add or Remove or a walk.
func (t *Tracker) update(ctx context.Context) {
	if err := t.refreshChanged(ctx); err != nil {
		t.deps.Log.Error(err, "Could not read the volume records; walking everything again")
	}
	t.takeEvents()
	t.mu.Lock()
	paths := make([]string, 0, len(t.dirty))
	for p := range t.dirty {
		paths = append(paths, p)
	}
	clear(t.dirty)
	t.mu.Unlock()
	sort.Strings(paths) // parents before children
	// What is gone leaves first and its directories' watches are removed, so that a directory renamed to a path
	// applied in the second pass gets a watch under its new name (inotify keeps one watch per inode, and the watcher
	// would report the moved directory's events under its old name). Each path is stat-ed once: the result sorts it
	// and is what its tree records.
	var gone, there []pathStat
	for _, p := range paths {
		fi, err := os.Lstat(p)
		t.pathStats.Add(1)
		if err != nil {
			gone = append(gone, pathStat{p: p, err: err})
		} else {
			there = append(there, pathStat{p: p, fi: fi})
		}
	}
	for _, ps := range append(gone, there...) {
		t.applyPath(ps)
	}
	t.mu.Lock()
	t.updatedAt = t.deps.Clock.Now()
	t.mu.Unlock()
}

// pathStat is a dirty path and what its lstat said.
type pathStat struct {
	p   string
	fi  fs.FileInfo
	err error
}

// applyPath brings one pod directory's accounting in line with one path on disk. The tree is the Run goroutine's
// own, so it is updated (and watches added or removed) without the lock; the result is published under it.
func (t *Tracker) applyPath(ps pathStat) {
	p := ps.p
	rest := strings.TrimPrefix(p, t.root+"/")
	name, rel, _ := strings.Cut(rest, "/")
	d := t.dirs[name] // written only by this goroutine
	switch {
	case d == nil:
		return // not a pod directory a volume owns (yet: the store's notification brings it)
	case d.t == nil:
		if rel == "" {
			t.measureDir(name, nil) // a missing pod directory is back
		}
		return
	}
	err := d.t.apply(rel, ps.fi, ps.err, t.watchDir, t.unwatchDir)
	t.mu.Lock()
	if errors.Is(err, fs.ErrNotExist) {
		t.setTreeLocked(d, nil)
	} else {
		t.setTreeLocked(d, d.t)
	}
	t.mu.Unlock()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.deps.Log.V(2).Info("Could not measure a path; the periodic walk will", "path", p, "err", err)
	}
}

// takeEvents moves the watcher's batch into the dirty paths; a lost event (overflow) asks for a full walk.
func (t *Tracker) takeEvents() {
	if t.w == nil {
		return
	}
	b := t.w.Take()
	if b.Errs > 0 {
		t.deps.Log.V(2).Info("Usage file watch errors (no events lost)", "count", b.Errs, "last", b.LastErr)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if b.Overflow {
		t.m.overflows.Inc()
		t.rewalk = true
		return
	}
	for i, name := range b.Names {
		t.markDirtyLocked(name, b.Ops[i])
	}
}

// entriesChanged are the ops that add or remove a directory's entries, and so change its size (and link count).
const entriesChanged = fswatch.Create | fswatch.Remove | fswatch.Rename

// markDirtyLocked records a path an event named, and its parent when an entry came or went (a file only written to
// or chmod-ed, a log line appended, leaves its directory as it was). keeplog's own names are recognised before any
// syscall: the state directory at the top of the root and a pod directory's own .keeplog (which is never watched
// either).
func (t *Tracker) markDirtyLocked(path string, op fswatch.Op) {
	rest, ok := strings.CutPrefix(path, t.root+"/")
	if !ok || strings.HasPrefix(rest, ".") {
		return
	}
	name, rel, nested := strings.Cut(rest, "/")
	if isOwnRel(rel) {
		return
	}
	if nested && op&entriesChanged != 0 { // the parent's size and link count change too
		parent := t.root + "/" + name
		if pr := parentRel(rel); pr != "" {
			parent += "/" + pr
		}
		t.dirty[parent] = struct{}{}
	}
	t.dirty[path] = struct{}{}
}

// isOwnRel reports whether rel (inside a pod directory) is keeplog's own metadata directory or below it.
func isOwnRel(rel string) bool {
	return rel == api.KeeplogDir || strings.HasPrefix(rel, api.KeeplogDir+"/")
}

// parentRel is rel's parent inside the pod directory ("" for a top-level entry).
func parentRel(rel string) string {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return ""
	}
	return rel[:i]
}

// watchDir adds an inotify watch; a directory that cannot be watched is still measured by the periodic walk.
// keeplog's own directory inside a pod directory is not watched: what keeplog writes there must not wake it.
func (t *Tracker) watchDir(dir string) {
	if t.w == nil {
		return
	}
	rest := strings.TrimPrefix(dir, t.root+"/")
	if _, rel, _ := strings.Cut(rest, "/"); isOwnRel(rel) {
		return
	}
	if err := t.w.Add(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.deps.Log.V(2).Info("Cannot watch directory; its usage is corrected by the periodic walk only", "dir", dir, "err", err)
	}
}

// unwatchDir drops the watch of a directory that left a pod directory (renamed away or deleted).
func (t *Tracker) unwatchDir(dir string) {
	if t.w != nil {
		_ = t.w.Remove(dir)
	}
}
