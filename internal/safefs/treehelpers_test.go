package safefs

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// outsideTree makes a directory with files (what a bind mount brings in) and returns the sha256 of each.
func outsideTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	for _, p := range []string{"a", "sub/b", "sub/deeper/c"} {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("outside "+p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return hashTree(t, dir)
}

// hashTree is the sha256 of every regular file below dir, by relative path.
func hashTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// nest makes depth nested directories d1/d2/... below dir with mkdirat (no path length limit) and a file "leaf" at
// the bottom; every level also gets a file "f" and, with siblings, an empty directory "s". It returns the
// slash-separated relative path of the deepest directory.
func nest(t *testing.T, dir string, depth int, siblings bool) string {
	t.Helper()
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	rel := ""
	for i := 1; i <= depth; i++ {
		name := "d" + strconv.Itoa(i)
		if err := unix.Mkdirat(int(d.Fd()), name, 0o755); err != nil {
			t.Fatal(err)
		}
		if siblings {
			if err := unix.Mkdirat(int(d.Fd()), "s", 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := CreateAt(d, "f", 0o644)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		next, err := OpenDirAt(d, name, false)
		d.Close()
		if err != nil {
			t.Fatal(err)
		}
		d = next
		rel = joinRel(rel, name)
	}
	f, err := CreateAt(d, "leaf", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	d.Close()
	return rel
}
