package safefs

import (
	"errors"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// MaxWalkDepth is how many levels below its start Walk descends. Deeper directories are not walked and are
// returned in WalkResult.TooDeep, never dropped silently. It bounds the work a pod can make a walk do (returning to
// a released level reopens it from an open ancestor), and nothing real is lost: an application that names its
// files by path cannot reach below PATH_MAX/2 = 2048 levels.
const MaxWalkDepth = 2048

// Entry is one thing Walk found.
type Entry struct {
	Rel  string      // slash-separated, relative to the walked directory (with Walk's prefix)
	Stat unix.Stat_t // lstat: a symlink is reported as a symlink
}

// Kind is the entry's type: unix.S_IFREG, S_IFDIR, S_IFLNK, ...
func (e Entry) Kind() uint32 { return e.Stat.Mode & unix.S_IFMT }

// WalkResult is what a walk did not look into. A caller that must know a tree completely (is everything archived?)
// treats a non-empty result as "not known".
type WalkResult struct {
	// Mounts are directories (relative paths) on another mount than the walked directory: not entered.
	Mounts []string
	// TooDeep are directories (relative paths) at MaxWalkDepth: not entered.
	TooDeep []string
}

// Walk calls fn for every entry below dir, a directory before its contents, and returns what it did not enter. It
// never follows a symlink, never opens anything but directories (each proven a directory on dir's mount by the
// descriptor it opened), enters no directory on another mount (WalkResult.Mounts) and none deeper than MaxWalkDepth
// (WalkResult.TooDeep), and holds a bounded number of descriptors at any depth. fn returns false to skip a
// directory's contents (keeplog's own metadata directory). prefix is dir's own path in the caller's terms ("" for
// the tree's top); entries' Rel and the depth bound start from it. Entries that vanish or are replaced while the
// walk runs are skipped. dir stays open and its offset untouched. Only listing dir itself can fail.
func Walk(dir *os.File, prefix string, fn func(Entry) bool) (WalkResult, error) {
	var res WalkResult
	mount, err := MountOf(dir)
	if err != nil {
		return res, err
	}
	names, err := ReadDirNames(dir)
	if err != nil {
		return res, err
	}
	depth := 0
	if prefix != "" {
		depth = strings.Count(prefix, "/") + 1
	}
	s := &dirStack{mount: mount, frames: []*frame{{rel: prefix, depth: depth, dir: dir, names: names}}}
	defer s.closeAll()
	for len(s.frames) > 0 {
		top := s.top()
		if len(top.names) == 0 {
			s.pop()
			continue
		}
		name := top.names[0]
		top.names = top.names[1:]
		d, err := s.dirOf(len(s.frames) - 1)
		if err != nil {
			top.names = nil // moved or replaced since it was listed: what it holds now is walked where it is now
			continue
		}
		s.visit(d, top, name, fn, &res)
	}
	return res, nil
}

// visit reports one entry of the top frame and pushes it when it is a directory to enter.
func (s *dirStack) visit(d *os.File, top *frame, name string, fn func(Entry) bool, res *WalkResult) {
	st, err := Lstat(d, name)
	if err != nil {
		return // vanished
	}
	e := Entry{Rel: joinRel(top.rel, name), Stat: st}
	if !fn(e) || e.Kind() != unix.S_IFDIR {
		return
	}
	if top.depth+1 >= MaxWalkDepth {
		res.TooDeep = append(res.TooDeep, e.Rel)
		return
	}
	f, err := s.newFrame(d, name, e.Rel, top.depth+1)
	if errors.Is(err, ErrOtherMount) {
		res.Mounts = append(res.Mounts, e.Rel)
		return
	}
	if err != nil {
		return // replaced by a non-directory or vanished
	}
	s.push(f)
}
