package usage

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestAccountingMatchesDu changes real trees step by step (files created, grown, truncated, deleted, hard-linked,
// renamed within and across the pod directories of one volume, whole directories moved, created and removed) and
// after each step compares the tracked usage, kept current from file events only, with du on the same directories.
func TestAccountingMatchesDu(t *testing.T) {
	f := newFixture(t, "")
	dirs := f.volume("vol-a", 1<<30, nil, "p1", "p2")
	other := f.volume("vol-b", 1<<30, nil, "q1")
	a, b := dirs[0], dirs[1]
	// Before the start: a tree the first walk must measure, with a hard link, a symlink and a sparse file.
	writeFile(t, filepath.Join(a, "app", "app.log"), 10000)
	writeFile(t, filepath.Join(a, "app", "deep", "er", "x.log"), 3000)
	if err := os.Link(filepath.Join(a, "app", "app.log"), filepath.Join(a, "app", "app.log.link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(a, "app", "passwd")); err != nil {
		t.Fatal(err)
	}
	sparse, err := os.Create(filepath.Join(b, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sparse.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	sparse.Close()
	writeFile(t, filepath.Join(other[0], "other.log"), 5000)
	f.start(Config{}, nil)
	f.waitUsage(t, "vol-a", du(t, a, b))
	f.waitUsage(t, "vol-b", du(t, other[0]))

	steps := []struct {
		name string
		do   func(t *testing.T)
	}{
		{"create files", func(t *testing.T) {
			for i := range 20 {
				writeFile(t, filepath.Join(a, "app", fmt.Sprintf("f%d.log", i)), 1000*i)
			}
		}},
		{"grow a file", func(t *testing.T) { appendFile(t, filepath.Join(a, "app", "app.log"), 200000) }},
		{"truncate a file", func(t *testing.T) {
			if err := os.Truncate(filepath.Join(a, "app", "f10.log"), 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"delete files", func(t *testing.T) {
			for i := range 10 {
				if err := os.Remove(filepath.Join(a, "app", fmt.Sprintf("f%d.log", i))); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"delete one of two hard links", func(t *testing.T) {
			if err := os.Remove(filepath.Join(a, "app", "app.log")); err != nil {
				t.Fatal(err)
			}
		}},
		{"rename a file across pod directories", func(t *testing.T) {
			if err := os.Rename(filepath.Join(a, "app", "f15.log"), filepath.Join(b, "f15.log")); err != nil {
				t.Fatal(err)
			}
		}},
		{"rename a directory across pod directories", func(t *testing.T) {
			if err := os.Rename(filepath.Join(a, "app", "deep"), filepath.Join(b, "deep")); err != nil {
				t.Fatal(err)
			}
		}},
		{"grow a file in the moved directory", func(t *testing.T) { appendFile(t, filepath.Join(b, "deep", "er", "x.log"), 50000) }},
		{"rename within a pod directory over an existing file", func(t *testing.T) {
			if err := os.Rename(filepath.Join(a, "app", "f16.log"), filepath.Join(a, "app", "f17.log")); err != nil {
				t.Fatal(err)
			}
		}},
		{"create a deep tree at once", func(t *testing.T) {
			for i := range 5 {
				writeFile(t, filepath.Join(b, "burst", fmt.Sprintf("d%d", i), "e", "f.log"), 7000)
			}
		}},
		{"move a tree in from outside the volume", func(t *testing.T) {
			out := filepath.Join(filepath.Dir(f.st.Root()), "outside")
			writeFile(t, filepath.Join(out, "x", "big"), 300000)
			if err := os.Rename(out, filepath.Join(a, "moved-in")); err != nil {
				t.Fatal(err)
			}
		}},
		{"move a tree out of the volume", func(t *testing.T) {
			if err := os.Rename(filepath.Join(b, "burst"), filepath.Join(filepath.Dir(f.st.Root()), "burst")); err != nil {
				t.Fatal(err)
			}
		}},
		{"remove a tree", func(t *testing.T) {
			if err := os.RemoveAll(filepath.Join(a, "moved-in")); err != nil {
				t.Fatal(err)
			}
		}},
		{"fill the sparse file", func(t *testing.T) {
			fh, err := os.OpenFile(filepath.Join(b, "sparse"), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			if _, err := fh.WriteAt(make([]byte, 100000), 1<<20); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.do(t)
			f.waitUsage(t, "vol-a", du(t, a, b))
			f.waitUsage(t, "vol-b", du(t, other[0]))
		})
	}
}

// TestMissingDirectory: a pod directory deleted on the node is reported missing, and its usage leaves the volume.
func TestMissingDirectory(t *testing.T) {
	f := newFixture(t, "")
	dirs := f.volume("vol-a", 1<<30, nil, "p1", "p2")
	writeFile(t, filepath.Join(dirs[0], "a.log"), 50000)
	f.start(Config{}, nil)
	f.waitUsage(t, "vol-a", du(t, dirs...))
	if err := os.RemoveAll(dirs[0]); err != nil {
		t.Fatal(err)
	}
	f.waitUsage(t, "vol-a", du(t, dirs[1]))
	s, _ := f.tr.Status("vol-a")
	if len(s.Missing) != 1 || s.Missing[0] != filepath.Base(dirs[0]) {
		t.Fatalf("missing = %v, want [%s]", s.Missing, filepath.Base(dirs[0]))
	}
	// SumDirBytes (the garbage collector's retained-bytes gauge): the directory that is there has its figure, the
	// missing one and a name the tracker never saw are unknown.
	names := []string{filepath.Base(dirs[0]), filepath.Base(dirs[1]), "ns_unknown_0000"}
	sum, unknown, ready := f.tr.SumDirBytes(names)
	if !ready || sum != du(t, dirs[1]).Bytes || !slices.Equal(unknown, []string{names[0], names[2]}) {
		t.Fatalf("SumDirBytes(%v) = %d, %v, %v; want %d, [%s %s], true", names, sum, unknown, ready, du(t, dirs[1]).Bytes, names[0], names[2])
	}
}

// TestNewVolumeAndPodDirectory: volumes and pod directories that appear after the start are found from the
// records' file events, without a walk.
func TestNewVolumeAndPodDirectory(t *testing.T) {
	f := newFixture(t, "")
	f.start(Config{}, nil)
	if _, ok := f.tr.Status("vol-new"); ok {
		t.Fatal("an unknown volume has a status")
	}
	dirs := f.volume("vol-new", 1<<20, nil, "p1")
	writeFile(t, filepath.Join(dirs[0], "app", "a.log"), 12345)
	f.waitUsage(t, "vol-new", du(t, dirs...))
	s, _ := f.tr.Status("vol-new")
	if s.LimitBytes != 1<<20 {
		t.Fatalf("limit = %d, want %d", s.LimitBytes, 1<<20)
	}
}

// TestAppendCostsOneStat: a line appended to a log (an open, a write, a close: what 100 pods do every second) is
// one lstat of the file when the events are applied, not also one of its directory, whose entries did not change;
// a new file is both (the directory grew an entry), and the accounting matches du either way.
func TestAppendCostsOneStat(t *testing.T) {
	f := newFixture(t, "")
	dirs := f.volume("vol-a", 1<<30, nil, "p1")
	log := filepath.Join(dirs[0], "app", "app.log")
	writeFile(t, log, 1000)
	f.start(Config{}, nil)
	f.waitUsage(t, "vol-a", du(t, dirs...))
	stats := func(change func()) int64 {
		t.Helper()
		n0 := f.tr.pathStats.Load()
		change()
		f.waitUsage(t, "vol-a", du(t, dirs...))
		f.tr.flush(f.ctx) // nothing more to apply: an event after the usage matched would be counted here
		return f.tr.pathStats.Load() - n0
	}
	if n := stats(func() { appendFile(t, log, 64<<10) }); n != 1 {
		t.Fatalf("a line appended to a log cost %d lstats, want 1 (the file's)", n)
	}
	moveIn := func() { // one event: a file written elsewhere and renamed in, as a logger that rotates does
		out := filepath.Join(filepath.Dir(f.st.Root()), "new.log")
		writeFile(t, out, 64<<10)
		if err := os.Rename(out, filepath.Join(dirs[0], "app", "new.log")); err != nil {
			t.Fatal(err)
		}
	}
	if n := stats(moveIn); n != 2 {
		t.Fatalf("a new file cost %d lstats, want 2 (the file's and its directory's)", n)
	}
}
