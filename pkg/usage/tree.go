package usage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Usage is what a set of directories holds, counted as du counts it: allocated bytes (st_blocks * 512) and inodes,
// each inode once however many hard links name it, directories (the top one included) counted too.
type Usage struct {
	Bytes  int64
	Inodes int64
}

// tree is the accounting of one pod directory: every entry below it by path relative to it ("" is the directory
// itself) and the inodes those entries name. It is changed only by its owner (the Tracker, under its lock).
type tree struct {
	root    string           // absolute path of the pod directory
	entries map[string]entry // by relative path
	inodes  map[uint64]*inode
	usage   Usage
}

type entry struct {
	ino uint64
	dir bool
}

type inode struct {
	bytes int64
	links int // entries of this tree that name the inode
}

func newTree(root string) *tree {
	return &tree{root: root, entries: map[string]entry{}, inodes: map[uint64]*inode{}}
}

// pacer slows a walk to a number of entries per second; the zero value does not slow it.
type pacer struct {
	perSecond int
	start     time.Time
	n         int
	sleep     func(time.Duration)
}

func (p *pacer) step() {
	if p == nil || p.perSecond <= 0 {
		return
	}
	if p.n == 0 {
		p.start = time.Now()
	}
	p.n++
	if p.n%256 != 0 {
		return
	}
	due := p.start.Add(time.Duration(float64(p.n) / float64(p.perSecond) * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		p.sleep(d)
	}
}

// measure walks the directory at root without following symlinks and returns its accounting. onDir is told about
// every directory found (the Tracker watches them). A root that does not exist is fs.ErrNotExist.
func measure(root string, onDir func(abs string), pace *pacer) (*tree, error) {
	t := newTree(root)
	if err := t.addSubtree("", onDir, pace); err != nil {
		return nil, err
	}
	if _, ok := t.entries[""]; !ok {
		return nil, fmt.Errorf("measure %s: %w", root, fs.ErrNotExist)
	}
	return t, nil
}

// addSubtree records rel and everything below it as they are on disk now. Entries that vanish during the walk are
// skipped: the event that reports their removal will find them gone.
func (t *tree) addSubtree(rel string, onDir func(abs string), pace *pacer) error {
	start := t.abs(rel)
	err := filepath.WalkDir(start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if p == start {
				return err
			}
			// An unreadable directory below: counted as an entry, its contents unknown until readable.
			if e != nil && e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		pace.step()
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		r := t.relOf(p)
		t.set(r, fi)
		if fi.IsDir() && onDir != nil {
			onDir(p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("measure %s: %w", start, err)
	}
	return nil
}

// update brings one path in line with the disk: gone, it leaves (with everything below it; onGoneDir is told about
// each directory that left); there, it is recorded, and a directory that is new to the tree (created, or moved in)
// is walked. It returns fs.ErrNotExist when rel is the pod directory itself and it is gone.
func (t *tree) update(rel string, onDir, onGoneDir func(abs string)) error {
	fi, err := os.Lstat(t.abs(rel))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("stat %s: %w", t.abs(rel), err)
		}
		t.removeSubtree(rel, onGoneDir)
		if rel == "" {
			return fs.ErrNotExist
		}
		return nil
	}
	old, known := t.entries[rel]
	ino := fi.Sys().(*syscall.Stat_t).Ino
	if known && old.ino != ino {
		t.removeSubtree(rel, onGoneDir) // replaced by another file or directory of the same name
		known = false
	}
	if fi.IsDir() && !known {
		return t.addSubtree(rel, onDir, nil)
	}
	t.set(rel, fi)
	return nil
}

// set records rel as naming the file fi describes, updating that inode's size.
func (t *tree) set(rel string, fi fs.FileInfo) {
	st := fi.Sys().(*syscall.Stat_t)
	bytes := st.Blocks * 512
	if old, ok := t.entries[rel]; ok && old.ino != st.Ino {
		t.drop(rel)
	}
	in, ok := t.inodes[st.Ino]
	if !ok {
		in = &inode{}
		t.inodes[st.Ino] = in
		t.usage.Inodes++
	}
	if _, named := t.entries[rel]; !named {
		in.links++
		t.entries[rel] = entry{ino: st.Ino, dir: fi.IsDir()}
	}
	t.usage.Bytes += bytes - in.bytes
	in.bytes = bytes
}

// drop forgets one entry; its inode goes when no other entry names it.
func (t *tree) drop(rel string) {
	e, ok := t.entries[rel]
	if !ok {
		return
	}
	delete(t.entries, rel)
	in := t.inodes[e.ino]
	in.links--
	if in.links <= 0 {
		delete(t.inodes, e.ino)
		t.usage.Bytes -= in.bytes
		t.usage.Inodes--
	}
}

// removeSubtree forgets rel and every entry below it, telling onGoneDir (may be nil) about each directory.
func (t *tree) removeSubtree(rel string, onGoneDir func(abs string)) {
	prefix := rel + "/"
	if rel == "" {
		prefix = ""
	}
	for r, e := range t.entries {
		if r == rel || strings.HasPrefix(r, prefix) {
			if e.dir && onGoneDir != nil {
				onGoneDir(t.abs(r))
			}
			t.drop(r)
		}
	}
}

func (t *tree) abs(rel string) string {
	if rel == "" {
		return t.root
	}
	return t.root + "/" + rel
}

func (t *tree) relOf(abs string) string {
	if abs == t.root {
		return ""
	}
	return strings.TrimPrefix(abs, t.root+"/")
}
