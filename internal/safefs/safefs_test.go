package safefs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fixture: <tmp>/outside/secret (the host) and <tmp>/vol (what a pod writes), with links from the volume out.
func fixture(t *testing.T) (vol *os.File, outside string) {
	t.Helper()
	base := t.TempDir()
	outside = filepath.Join(base, "outside")
	v := filepath.Join(base, "vol")
	for _, d := range []string{outside, v, filepath.Join(v, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("HOST SECRET"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v, "file"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"dirlink": outside, "filelink": filepath.Join(outside, "secret"), "dangling": filepath.Join(outside, "new")} {
		if err := os.Symlink(target, filepath.Join(v, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mkfifo(filepath.Join(v, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDir(v)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, outside
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"a", ".keeplog", "x.hprof", strings.Repeat("n", 255)} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "/a", "a\x00b", strings.Repeat("n", 256)} {
		if err := CheckName(bad); err == nil {
			t.Errorf("CheckName(%q) accepted it", bad)
		}
	}
}

func TestOpenDirAtNeverFollowsSymlinks(t *testing.T) {
	vol, _ := fixture(t)
	for _, name := range []string{"dirlink", "file", "filelink"} {
		if d, err := OpenDirAt(vol, name, true); !errors.Is(err, ErrNotRegular) {
			t.Errorf("OpenDirAt(%s) = %v, %v; want ErrNotRegular", name, d, err)
		}
	}
	if _, err := OpenDirAt(vol, "dangling", true); err == nil {
		t.Error("OpenDirAt created a directory through a dangling symlink")
	}
	if _, err := OpenDirAt(vol, "missing", false); !errors.Is(err, unix.ENOENT) {
		t.Errorf("OpenDirAt(missing, no create): %v", err)
	}
	d, err := OpenDirAt(vol, "made", true)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if fi, err := os.Lstat(filepath.Join(vol.Name(), "made")); err != nil || !fi.IsDir() {
		t.Fatalf("made: %v %v", fi, err)
	}
	if _, err := OpenDirAt(vol, "../vol", false); err == nil {
		t.Error("OpenDirAt accepted a path")
	}
}

func TestOpenFileAtOnlyRegularFiles(t *testing.T) {
	vol, _ := fixture(t)
	f, st, err := OpenFileAt(vol, "file", unix.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if st.Size != 4 {
		t.Errorf("size %d", st.Size)
	}
	if fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK != 0 {
		t.Errorf("O_NONBLOCK still set (%x, %v)", fl, err)
	}
	if p, err := ResolvedPath(f); err != nil || p != filepath.Join(vol.Name(), "file") {
		t.Errorf("ResolvedPath %q %v", p, err)
	}
	// A symlink (to a host file), a FIFO nobody writes to (must not block) and a directory are refused.
	for _, name := range []string{"filelink", "fifo", "sub"} {
		if _, _, err := OpenFileAt(vol, name, unix.O_RDONLY); !errors.Is(err, ErrNotRegular) {
			t.Errorf("OpenFileAt(%s): %v, want ErrNotRegular", name, err)
		}
	}
	if _, _, err := OpenFileAt(vol, "filelink", unix.O_RDONLY); !errors.Is(err, unix.ELOOP) || !strings.Contains(err.Error(), "symlinks refused") {
		t.Errorf("a symlink: %v", err)
	}
}

func TestWriteFileAtReplacesSymlinksNeverTheirTargets(t *testing.T) {
	vol, outside := fixture(t)
	var prepared bool
	for _, name := range []string{"filelink", "dangling", "new"} {
		if err := WriteFileAt(vol, name, []byte("keeplog"), 0o640, func(f *os.File) error { prepared = true; return nil }); err != nil {
			t.Fatalf("WriteFileAt(%s): %v", name, err)
		}
		fi, err := os.Lstat(filepath.Join(vol.Name(), name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o640 {
			t.Fatalf("%s after the write: %v %v", name, fi, err)
		}
	}
	if !prepared {
		t.Error("prepare not called")
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "HOST SECRET" {
		t.Fatalf("the symlink's target was written: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(outside, "new")); !os.IsNotExist(err) {
		t.Fatalf("a file was created through the dangling symlink: %v", err)
	}
	names, err := ReadDirNames(vol)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, tmpPrefix) {
			t.Errorf("temporary file left: %s", n)
		}
	}
	// A failing prepare leaves nothing behind and the old content in place.
	if err := WriteFileAt(vol, "file", []byte("new"), 0o644, func(*os.File) error { return errors.New("no") }); err == nil {
		t.Fatal("prepare's error not returned")
	}
	if b, _ := os.ReadFile(filepath.Join(vol.Name(), "file")); string(b) != "data" {
		t.Fatalf("file changed by a failed write: %q", b)
	}
	if names, _ := ReadDirNames(vol); strings.Contains(strings.Join(names, " "), tmpPrefix) {
		t.Errorf("temporary file left after a failed write: %v", names)
	}
}

func TestCreateAtNeverReusesAnEntry(t *testing.T) {
	vol, outside := fixture(t)
	for _, name := range []string{"file", "filelink", "dangling"} {
		if _, err := CreateAt(vol, name, 0o644); !errors.Is(err, unix.EEXIST) {
			t.Errorf("CreateAt(%s): %v, want EEXIST", name, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(outside, "new")); !os.IsNotExist(err) {
		t.Fatalf("created through the dangling symlink: %v", err)
	}
	f, err := CreateAt(vol, "fresh", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if !ExistsAt(vol, "fresh") || !ExistsAt(vol, "dangling") || ExistsAt(vol, "nothing") {
		t.Error("ExistsAt")
	}
}

func TestIsTempOf(t *testing.T) {
	long := strings.Repeat("n", 250)
	for _, tc := range []struct {
		entry, name string
		want        bool
	}{
		{".tmp-0123456789ab-status.json", "status.json", true},
		{".tmp-0123456789ab-status.json", "other.json", false},
		{".tmp-0123456789ab-status.json.x", "status.json", false},
		{".tmp-0123456789a-status.json", "status.json", false},
		{"status.json", "status.json", false},
		{(".tmp-0123456789ab-" + long)[:255], long, true},
	} {
		if got := IsTempOf(tc.entry, tc.name); got != tc.want {
			t.Errorf("IsTempOf(%q, %q) = %v", tc.entry, tc.name, got)
		}
	}
}
