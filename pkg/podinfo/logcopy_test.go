package podinfo

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/pkg/api"
)

// logEnv is a fake /var/log/pods and a pod directory.
type logEnv struct {
	t      *testing.T
	source string // the source root
	src    string // <source>/<pod>/app
	podDir string
	dst    string // <podDir>/.keeplog/logs/app
	c      *LogCopier
}

func newLogEnv(t *testing.T) *logEnv {
	t.Helper()
	requireRoot(t)
	source := filepath.Join(t.TempDir(), "pods")
	src := filepath.Join(source, testRef.DirName(), "app")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	podDir := newPodDir(t, testRef)
	var n atomic.Int64 // a clock that moves, safe for concurrent Copy calls
	c, err := NewLogCopier(source, funcClock(func() time.Time { return fixedNow.Add(time.Duration(n.Add(1))) }))
	if err != nil {
		t.Fatal(err)
	}
	return &logEnv{t: t, source: source, src: src, podDir: podDir, dst: filepath.Join(podDir, api.KeeplogDir, api.LogsDir, "app"), c: c}
}

func (e *logEnv) copy() CopyStats {
	e.t.Helper()
	st, err := e.c.Copy(context.Background(), e.podDir, testRef)
	if err != nil {
		e.t.Fatalf("Copy: %v", err)
	}
	return st
}

func (e *logEnv) appendSrc(name string, lines ...string) {
	e.t.Helper()
	f, err := os.OpenFile(filepath.Join(e.src, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		fmt.Fprintf(f, "2030-01-02T03:04:05.%09dZ stdout F %s\n", len(l)*7919%1000000007, l)
	}
}

func (e *logEnv) dstFiles() []string {
	e.t.Helper()
	entries, err := os.ReadDir(e.dst)
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	sort.Strings(names)
	return names
}

func (e *logEnv) assertSame(name string) {
	e.t.Helper()
	want, got := readFile(e.t, filepath.Join(e.src, name)), readFile(e.t, filepath.Join(e.dst, name))
	if got != want {
		e.t.Errorf("copy of %s:\n%q\nwant\n%q", name, got, want)
	}
	if uid, gid, mode := statOf(e.t, filepath.Join(e.dst, name)); uid != 0 || gid != 0 || mode != 0o644 {
		e.t.Errorf("copy of %s is %d:%d %v", name, uid, gid, mode)
	}
}

func TestLogCopyIncremental(t *testing.T) {
	e := newLogEnv(t)
	e.appendSrc("0.log", "hello", "world")
	if st := e.copy(); st.Files != 1 || st.Bytes == 0 || st.Containers != 1 {
		t.Errorf("first copy: %+v", st)
	}
	e.assertSame("0.log")
	first := readFile(t, filepath.Join(e.dst, "0.log"))
	e.appendSrc("0.log", "more")
	st := e.copy()
	e.assertSame("0.log")
	if want := int64(len(readFile(t, filepath.Join(e.src, "0.log"))) - len(first)); st.Bytes != want {
		t.Errorf("second copy appended %d bytes, want only the new %d", st.Bytes, want)
	}
	if st := e.copy(); st.Files != 0 || st.Bytes != 0 {
		t.Errorf("a copy with nothing new: %+v", st)
	}
	// A restart of the container: 1.log beside 0.log.
	e.appendSrc("1.log", "after restart")
	e.copy()
	e.assertSame("0.log")
	e.assertSame("1.log")
	if got := strings.Join(e.dstFiles(), " "); got != "0.log 1.log" {
		t.Errorf("copies: %s", got)
	}
}

func TestLogCopyFollowsRotation(t *testing.T) {
	e := newLogEnv(t)
	e.appendSrc("0.log", "a1", "a2")
	e.copy()
	// Lines written, then kubelet rotates: 0.log -> 0.log.<ts>, and the runtime reopens a new 0.log.
	e.appendSrc("0.log", "a3 written after the copy, before rotation")
	rotated := "0.log.20300102-030405"
	if err := os.Rename(filepath.Join(e.src, "0.log"), filepath.Join(e.src, rotated)); err != nil {
		t.Fatal(err)
	}
	e.appendSrc("0.log", "b1")
	e.copy()
	e.assertSame(rotated)
	e.assertSame("0.log")
	if got := strings.Join(e.dstFiles(), " "); got != "0.log "+rotated {
		t.Errorf("copies: %s", got)
	}
	// kubelet compresses the rotated file later and removes it; keeplog keeps the .gz as-is and drops its own
	// uncompressed copy, whose content the .gz holds.
	gzipFile(t, filepath.Join(e.src, rotated))
	e.copy()
	e.assertSame(rotated + ".gz")
	if got := strings.Join(e.dstFiles(), " "); got != "0.log "+rotated+".gz" {
		t.Errorf("copies after compression: %s", got)
	}
	// Then kubelet deletes the oldest rotated files: the copies stay.
	if err := os.Remove(filepath.Join(e.src, rotated+".gz")); err != nil {
		t.Fatal(err)
	}
	e.copy()
	if got := strings.Join(e.dstFiles(), " "); got != "0.log "+rotated+".gz" {
		t.Errorf("copies after kubelet deleted its file: %s", got)
	}
}

func TestLogCopyRotatedAndCompressedBetweenCopies(t *testing.T) {
	e := newLogEnv(t)
	e.appendSrc("0.log", "a1", "a2")
	e.copy()
	old := readFile(t, filepath.Join(e.dst, "0.log"))
	e.appendSrc("0.log", "a3")
	rotated := "0.log.20300102-030405"
	if err := os.Rename(filepath.Join(e.src, "0.log"), filepath.Join(e.src, rotated)); err != nil {
		t.Fatal(err)
	}
	gzipFile(t, filepath.Join(e.src, rotated))
	e.appendSrc("0.log", "b1")
	e.copy()
	e.assertSame("0.log")
	e.assertSame(rotated + ".gz")
	var partial string
	for _, n := range e.dstFiles() {
		if strings.HasPrefix(n, "0.log.partial-") {
			partial = n
		}
	}
	if partial == "" {
		t.Fatalf("the old copy was not kept: %v", e.dstFiles())
	}
	if got := readFile(t, filepath.Join(e.dst, partial)); got != old {
		t.Errorf("partial copy = %q, want %q", got, old)
	}
	if len(e.dstFiles()) != 3 {
		t.Errorf("copies: %v", e.dstFiles())
	}
}

func TestLogCopyCompletesAnInterruptedGzipCopy(t *testing.T) {
	e := newLogEnv(t)
	e.appendSrc("0.log", strings.Repeat("x", 10000))
	name := "0.log.20300102-030405"
	if err := os.Rename(filepath.Join(e.src, "0.log"), filepath.Join(e.src, name)); err != nil {
		t.Fatal(err)
	}
	gzipFile(t, filepath.Join(e.src, name))
	// A copy that stopped half way (plugin killed).
	full := readFile(t, filepath.Join(e.src, name+".gz"))
	if err := os.MkdirAll(e.dst, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(e.dst, name+".gz"), full[:len(full)/2])
	e.copy()
	e.assertSame(name + ".gz")
}

func gzipFile(t *testing.T, path string) {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(readFile(t, path))); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path+".gz", b.String())
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func TestLogCopyNeverFollowsSymlinksOrHardLinks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(e *logEnv, secret string)
		want  string // in the error
	}{
		{"0.log is a symlink to a secret", func(e *logEnv, secret string) {
			if err := os.Symlink(secret, filepath.Join(e.src, "0.log")); err != nil {
				e.t.Fatal(err)
			}
		}, "symlinks refused"},
		{"a rotated name is a symlink to /etc/shadow", func(e *logEnv, secret string) {
			if err := os.Symlink("/etc/shadow", filepath.Join(e.src, "0.log.20300102-030405.gz")); err != nil {
				e.t.Fatal(err)
			}
		}, "symlinks refused"},
		{"0.log is a hard link to a secret", func(e *logEnv, secret string) {
			if err := os.Link(secret, filepath.Join(e.src, "0.log")); err != nil {
				e.t.Fatal(err)
			}
		}, "hard links"},
		{"the container directory is a symlink", func(e *logEnv, secret string) {
			evil := filepath.Join(filepath.Dir(e.src), "evil")
			if err := os.Symlink(filepath.Dir(secret), evil); err != nil {
				e.t.Fatal(err)
			}
		}, "symlinks refused"},
		{"0.log is a FIFO", func(e *logEnv, secret string) {
			if err := unix.Mkfifo(filepath.Join(e.src, "0.log"), 0o644); err != nil {
				e.t.Fatal(err)
			}
		}, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLogEnv(t)
			secretDir := t.TempDir()
			secret := filepath.Join(secretDir, "0.log")
			writeFile(t, secret, "root:$6$secret-hash:19000::::::\n")
			e.appendSrc("1.log", "a legitimate line")
			tc.plant(e, secret)
			_, err := e.c.Copy(context.Background(), e.podDir, testRef)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one with %q", err, tc.want)
			}
			// Nothing of the secret anywhere in the pod directory; the legitimate file copied anyway.
			_ = filepath.Walk(e.podDir, func(p string, fi os.FileInfo, err error) error {
				if err == nil && fi.Mode().IsRegular() && strings.Contains(readFile(t, p), "secret-hash") {
					t.Errorf("%s holds the secret", p)
				}
				if err == nil && fi.Mode()&os.ModeSymlink != 0 {
					t.Errorf("%s is a symlink", p)
				}
				return nil
			})
			e.assertSame("1.log")
		})
	}
}

func TestLogCopyNeverWritesThroughADestinationSymlink(t *testing.T) {
	e := newLogEnv(t)
	file, dir := outsideTarget(t)
	e.appendSrc("0.log", "line")
	if err := os.MkdirAll(e.dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(file, filepath.Join(e.dst, "0.log")); err != nil {
		t.Fatal(err)
	}
	e.copy()
	assertUntouched(t, file, dir)
	e.assertSame("0.log")
}

func TestLogCopyPodDirectoryOfKubeletIsASymlink(t *testing.T) {
	e := newLogEnv(t)
	if err := os.RemoveAll(filepath.Join(e.source, testRef.DirName())); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(e.source, testRef.DirName())); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Copy(context.Background(), e.podDir, testRef); err == nil || !strings.Contains(err.Error(), "symlinks refused") {
		t.Errorf("err = %v", err)
	}
}

func TestLogCopySourceMissing(t *testing.T) {
	e := newLogEnv(t)
	if err := os.RemoveAll(filepath.Join(e.source, testRef.DirName())); err != nil {
		t.Fatal(err)
	}
	if st := e.copy(); !st.SourceMissing || st.Files != 0 {
		t.Errorf("stats = %+v", st)
	}
	c, err := NewLogCopier(filepath.Join(t.TempDir(), "nothing"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := c.Copy(context.Background(), e.podDir, testRef); err != nil || !st.SourceMissing {
		t.Errorf("missing root: %+v %v", st, err)
	}
	if _, err := NewLogCopier("relative/pods", nil); err == nil {
		t.Error("a relative source root accepted")
	}
	if c, _ := NewLogCopier("", nil); c.SourceRoot() != DefaultLogSourceRoot {
		t.Errorf("default source root = %s", c.SourceRoot())
	}
}

func TestLogCopyConcurrentCallsCopyOnce(t *testing.T) {
	e := newLogEnv(t)
	for i := 0; i < 2000; i++ {
		e.appendSrc("0.log", fmt.Sprintf("line %d", i))
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.c.Copy(context.Background(), e.podDir, testRef); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	e.assertSame("0.log")
}
