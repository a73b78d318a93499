package usage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/safefs"
)

// Usage is what a set of directories holds, counted as du counts it: allocated bytes (st_blocks * 512) and inodes,
// each inode once however many hard links name it, directories (the top one included) counted too.
type Usage struct {
	Bytes  int64
	Inodes int64
}

// tree is the accounting of one pod directory: every entry below it by path relative to it ("" is the directory
// itself) and the inodes those entries name. It is changed only by its owner (the Tracker, under its lock).
//
// A tree whose pod is gone is compacted (entries and inodes dropped, its usage kept): a node keeps thousands of
// retained directories that nobody writes to, and the periodic walk alone keeps their usage correct.
type tree struct {
	root    string           // absolute path of the pod directory
	dev     uint64           // the pod directory's st_dev: the walk never crosses to another device
	mnt     uint64           // its mount ID (statx STATX_MNT_ID; 0 when the kernel does not say): nor to another mount
	entries map[string]entry // by relative path; nil when compact
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

// stat is what the accounting needs of one entry.
type stat struct {
	ino    uint64
	bytes  int64 // allocated: st_blocks * 512
	dir    bool
	dev    uint64
	mnt    uint64
	hasMnt bool
}

// maxDepth bounds how deep a walk descends (each level holds one directory descriptor open).
const maxDepth = 512

func newTree(root string) *tree {
	return &tree{root: root, entries: map[string]entry{}, inodes: map[uint64]*inode{}}
}

// compact drops the per-entry maps, keeping the usage; it returns the directories (absolute paths) it knew, so
// their watches can be removed.
func (t *tree) compact() []string {
	var dirs []string
	for r, e := range t.entries {
		if e.dir {
			dirs = append(dirs, t.abs(r))
		}
	}
	t.entries, t.inodes = nil, nil
	return dirs
}

// compacted reports whether the tree keeps only its usage.
func (t *tree) compacted() bool { return t.entries == nil }

// pacer slows a walk to a number of entries per second; the zero value does not slow it. progress (may be nil) is
// called every 256 entries, so that a long walk proves it is alive.
type pacer struct {
	perSecond int
	start     time.Time
	n         int
	sleep     func(time.Duration)
	progress  func()
}

func (p *pacer) step() {
	if p == nil {
		return
	}
	if p.n == 0 {
		p.start = time.Now()
	}
	p.n++
	if p.n%256 != 0 {
		return
	}
	if p.progress != nil {
		p.progress()
	}
	if p.perSecond <= 0 {
		return
	}
	due := p.start.Add(time.Duration(float64(p.n) / float64(p.perSecond) * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		p.sleep(d)
	}
}

// measure walks the directory at root without following symlinks and returns its accounting. onDir (may be nil)
// is told about every directory found (the Tracker watches them). A root that does not exist is fs.ErrNotExist.
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

// statAt stats name below the directory dirfd (name "" with AT_EMPTY_PATH: dirfd itself) without following a
// symlink and without opening anything.
func statAt(dirfd int, name string) (stat, error) {
	flags := unix.AT_SYMLINK_NOFOLLOW | unix.AT_NO_AUTOMOUNT
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	var sx unix.Statx_t
	if err := unix.Statx(dirfd, name, flags, unix.STATX_TYPE|unix.STATX_INO|unix.STATX_BLOCKS|unix.STATX_MNT_ID, &sx); err != nil {
		return stat{}, err
	}
	return stat{ino: sx.Ino, bytes: int64(sx.Blocks) * 512, dir: sx.Mode&unix.S_IFMT == unix.S_IFDIR,
		dev: unix.Mkdev(sx.Dev_major, sx.Dev_minor), mnt: sx.Mnt_id, hasMnt: sx.Mask&unix.STATX_MNT_ID != 0}, nil
}

// sameMount reports whether st is on the pod directory's own mount.
func (t *tree) sameMount(st stat) bool {
	return st.dev == t.dev && (!st.hasMnt || t.mnt == 0 || st.mnt == t.mnt)
}

// addSubtree records rel and everything below it as they are on disk now. It only stats entries and opens only
// directories (through safefs: no symlink followed, O_DIRECTORY, so never a FIFO or device), and never descends into
// a directory on another device or mount than the pod directory's. Entries that vanish during the walk are
// skipped: the event that reports their removal will find them gone.
func (t *tree) addSubtree(rel string, onDir func(abs string), pace *pacer) error {
	top, err := safefs.OpenDir(t.root)
	if err != nil {
		return fmt.Errorf("measure %s: %w", t.root, err)
	}
	defer top.Close()
	st, err := statAt(int(top.Fd()), "")
	if err != nil {
		return fmt.Errorf("measure %s: %w", t.root, err)
	}
	if rel == "" {
		t.dev, t.mnt = st.dev, st.mnt
	}
	dir := top
	for i, name := range strings.Split(rel, "/") {
		if rel == "" {
			break
		}
		next, err := t.openDirAt(dir, name)
		if i > 0 {
			dir.Close()
		}
		if err != nil {
			return nil // gone, replaced, or on another mount: nothing to record now
		}
		dir = next
		if st, err = statAt(int(dir.Fd()), ""); err != nil {
			dir.Close()
			return nil
		}
	}
	if dir != top {
		defer dir.Close()
	}
	t.set(rel, st)
	if onDir != nil {
		onDir(t.abs(rel))
	}
	pace.step()
	return t.walkDir(dir, rel, onDir, pace, 0)
}

// openDirAt opens the directory name below dir when it is a directory on the pod directory's mount.
func (t *tree) openDirAt(dir *os.File, name string) (*os.File, error) {
	f, err := safefs.OpenDirAt(dir, name, false)
	if err != nil {
		return nil, err
	}
	st, err := statAt(int(f.Fd()), "")
	if err == nil && !t.sameMount(st) {
		err = fmt.Errorf("%s is on another mount: %w", f.Name(), safefs.ErrNotRegular)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// walkDir records the entries of the open directory dir (at rel) and walks its subdirectories.
func (t *tree) walkDir(dir *os.File, rel string, onDir func(abs string), pace *pacer, depth int) error {
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil // unreadable: counted as an entry, its contents unknown until readable
	}
	for _, name := range names {
		pace.step()
		st, err := statAt(int(dir.Fd()), name)
		if err != nil {
			continue // vanished: the event that reports its removal finds it gone
		}
		r := name
		if rel != "" {
			r = rel + "/" + name
		}
		if !st.dir {
			t.set(r, st)
			continue
		}
		if !t.sameMount(st) || depth >= maxDepth {
			continue // a mount point: what is mounted there is not the pod directory's
		}
		sub, err := t.openDirAt(dir, name)
		if err != nil {
			continue
		}
		if opened, err := statAt(int(sub.Fd()), ""); err != nil || opened.ino != st.ino {
			sub.Close() // replaced between the stat and the open: its event will bring it in
			continue
		}
		t.set(r, st)
		if onDir != nil {
			onDir(t.abs(r))
		}
		err = t.walkDir(sub, r, onDir, pace, depth+1)
		sub.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// apply brings one path in line with the disk: gone, it leaves (with everything below it; onGoneDir is told about
// each directory that left); there, it is recorded, and a directory that is new to the tree (created, or moved in)
// is walked. fi and err are what an lstat of the path just said (the caller's: it sorts paths by it). It returns
// fs.ErrNotExist when rel is the pod directory itself and it is gone.
func (t *tree) apply(rel string, fi fs.FileInfo, err error, onDir, onGoneDir func(abs string)) error {
	if t.compacted() {
		// Nobody writes to a volume whose pods are all gone: the periodic walk keeps it correct. Only the pod
		// directory's own removal is seen at once.
		if rel == "" && errors.Is(err, fs.ErrNotExist) {
			return fs.ErrNotExist
		}
		return nil
	}
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
	st := statOf(fi)
	if rel != "" && st.dev != t.dev {
		t.removeSubtree(rel, onGoneDir) // a mount point (or below one): not the pod directory's
		return nil
	}
	old, known := t.entries[rel]
	if known && old.ino != st.ino {
		t.removeSubtree(rel, onGoneDir) // replaced by another file or directory of the same name
		known = false
	}
	if st.dir && !known {
		return t.addSubtree(rel, onDir, nil)
	}
	t.set(rel, st)
	return nil
}

// statOf is the accounting's view of an lstat result.
func statOf(fi fs.FileInfo) stat {
	sys := fi.Sys().(*syscall.Stat_t)
	return stat{ino: sys.Ino, bytes: sys.Blocks * 512, dir: fi.IsDir(), dev: uint64(sys.Dev)}
}

// set records rel as naming the file st describes, updating that inode's size.
func (t *tree) set(rel string, st stat) {
	if old, ok := t.entries[rel]; ok && old.ino != st.ino {
		t.drop(rel)
	}
	in, ok := t.inodes[st.ino]
	if !ok {
		in = &inode{}
		t.inodes[st.ino] = in
		t.usage.Inodes++
	}
	if _, named := t.entries[rel]; !named {
		in.links++
		t.entries[rel] = entry{ino: st.ino, dir: st.dir}
	}
	t.usage.Bytes += st.bytes - in.bytes
	in.bytes = st.bytes
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
