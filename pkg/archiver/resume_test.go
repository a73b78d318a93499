package archiver

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keeplog/keeplog/pkg/api"
)

// killEnv runs an archiver child process (see TestMain) over e and kills it.
type killEnv struct {
	t        *testing.T
	e        *env
	specFile string
	logFile  *os.File
}

func newKillEnv(t *testing.T, e *env, spec childSpec) *killEnv {
	dir := t.TempDir()
	tb, _ := json.Marshal(e.target())
	spec.Root, spec.StateDir, spec.TargetFile = e.root, e.state, filepath.Join(dir, "target.json")
	sb, _ := json.Marshal(spec)
	k := &killEnv{t: t, e: e, specFile: filepath.Join(dir, "spec.json")}
	if err := os.WriteFile(spec.TargetFile, tb, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.specFile, sb, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "child.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	k.logFile = f
	return k
}

func (k *killEnv) start() *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+k.specFile)
	cmd.Stdout, cmd.Stderr = k.logFile, k.logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	return cmd
}

func (k *killEnv) log() string {
	b, _ := os.ReadFile(k.logFile.Name())
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// tempSize is the size of the one data temporary file on the server (-1 when there is none).
func (e *env) tempSize() int64 {
	n, _ := e.tempStat()
	return n
}

// tempStat is the size and inode of the one data temporary file on the server (-1 when there is none).
func (e *env) tempStat() (int64, uint64) {
	for _, f := range e.serverFiles() {
		if strings.Contains(f, api.TempFileMarker) && !strings.Contains(f, manifestSuffix) {
			if st, err := os.Stat(filepath.Join(e.srv.DataDir, f)); err == nil {
				return st.Size(), st.Sys().(*syscall.Stat_t).Ino
			}
		}
	}
	return -1, 0
}

// serverWatch follows the temporary file on the server during one run of an upload: where the run started
// writing (the smallest size seen, or 0 when the file was created anew) — observed on the server, not taken from
// the journal.
type serverWatch struct {
	ino   uint64
	start int64
}

func (w *serverWatch) observe(size int64, ino uint64) {
	switch {
	case size < 0:
	case ino != w.ino:
		w.ino, w.start = ino, 0
	case size < w.start:
		w.start = size
	}
}

// settledTempSize waits until the temporary file stops growing (the killed client's last writes may still be in
// sshd's buffers) and returns its size.
func (e *env) settledTempSize() int64 {
	last := e.tempSize()
	for stable := 0; stable < 5; {
		time.Sleep(60 * time.Millisecond)
		if n := e.tempSize(); n == last {
			stable++
		} else {
			last, stable = n, 0
		}
	}
	return last
}

// acknowledged is the prefix the journal (of a stopped archiver) records for its one item.
func (e *env) acknowledged(t testing.TB) int64 {
	j, _, err := OpenJournal(e.state)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range j.Items() {
		if it.Progress != nil {
			return it.Progress.Stored
		}
	}
	return 0
}

// The resume test: SIGKILL at random points of one big upload, 10 times. The server ends with one final
// file whose sha256 is the manifest's, and it received in total at most the stored size plus the chunks a kill can
// lose: the bytes it received are counted from the temporary file's size after each kill, less the prefix the next
// run continues from. (Before resume, each run started from byte 0: every kill, which comes at least one chunk into
// a run, cost the whole prefix again.) With a bandwidth limit one chunk is on the wire at a time, so a kill loses at
// most one; unlimited, two are (docs/archiving.md), so a kill loses at most two, and the journal must never record a
// chunk whose write was not acknowledged while the one before it is still in flight.
func TestSIGKILLResumesFromTheAcknowledgedPrefix(t *testing.T) {
	rate := int64(128 << 20)
	if testing.Short() {
		rate = 48 << 20
	}
	for _, tc := range []struct {
		name, comp string
		rate       int64
		inFlight   int64
	}{
		{"raw", "", rate, 1},
		{"zstd-3", "zstd:3", rate, 1},
		{"raw-unlimited", "", 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) { sigkillResume(t, tc.comp, tc.rate, tc.inFlight) })
	}
}

func sigkillResume(t *testing.T, comp string, rate, inFlight int64) {
	const kills, chunk = 10, 8 << 20
	size := bigSize()
	e := newEnv(t)
	pod := e.pod("ns", "resume")
	local := filepath.Join(e.root, pod, "app", "heap.hprof")
	sum := writeCompressible(t, local, size, 7)
	k := newKillEnv(t, e, childSpec{BytesPerSecond: rate, Compression: comp})
	final := e.archived(pod, "app/heap.hprof")
	if comp != "" {
		final += zstdSuffix
	}

	var received int64
	w := &serverWatch{}
	for i := 0; i < kills; i++ {
		cmd := k.start()
		w.start = max(w.start, e.tempSize())
		// Kill inFlight+1 to inFlight+2 chunks past the acknowledged prefix this run continues from, once it has
		// cut the server's file back to it (a longer leftover is truncated first): far enough that more writes in
		// flight than inFlight would show as more lost bytes (checked: with five on the wire the unlimited run
		// fails). With resume a kill loses at most the chunks in flight.
		at := e.acknowledged(t) + (inFlight+1)*chunk + rand.Int64N(chunk)
		deadline := time.Now().Add(2 * time.Minute)
		for resumed := false; ; {
			size, ino := e.tempStat()
			w.observe(size, ino)
			resumed = resumed || size < at
			if (resumed && size >= at) || exists(final) {
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("kill %d: the upload did not reach %d bytes; child log:\n%s", i, at, k.log())
			}
			time.Sleep(time.Millisecond)
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		if exists(final) {
			t.Fatalf("the upload finished after %d of %d kills: make it slower", i, kills)
		}
		got := e.settledTempSize()
		received += got - w.start
		t.Logf("kill %d: the run wrote from %d, the server had %d bytes at the kill", i, w.start, got)
		w.start = got
	}
	cmd := k.start()
	for !exists(final) {
		w.observe(e.tempStat())
		time.Sleep(time.Millisecond)
	}
	from := w.start
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()

	m := readManifest(t, final)
	stored := fileSHA(t, final)
	st, _ := os.Stat(final)
	received += st.Size() - from
	if m.SHA256 != sum || m.Size != size || m.StoredSHA256 != stored || m.StoredSize != st.Size() {
		t.Fatalf("manifest %+v; server file sha256 %s size %d; local sha256 %s", m, stored, st.Size(), sum)
	}
	if comp != "" {
		if got := zstdSHA(t, final); got != sum {
			t.Fatalf("zstd -d of the server file: sha256 %s, want %s", got, sum)
		}
		if m.Compression != "zstd" || m.CompressionLevel != 3 {
			t.Fatalf("manifest compression %q level %d", m.Compression, m.CompressionLevel)
		}
	}
	if files := e.serverFiles(); len(files) != 2 {
		t.Fatalf("server files %v, want the dump and its manifest", files)
	}
	limit := st.Size() + kills*inFlight*chunk
	t.Logf("%s: stored %d bytes (raw %d); the server received %d in total (limit %d)", m.Compression, st.Size(), size, received, limit)
	if received > limit {
		t.Fatalf("the server received %d bytes for a %d-byte file over %d kills: more than %d chunks (%d bytes each) per kill",
			received, st.Size(), kills, inFlight, chunk)
	}
}

// writeCompressible writes size bytes that compress about 4:3 (each 64 KiB: three quarters random, then text) and
// returns their sha256.
func writeCompressible(t testing.TB, p string, size int64, seed uint64) string {
	t.Helper()
	if err := writeRandomThen(p, size, seed, func(b []byte) {
		for i := len(b) * 3 / 4; i < len(b); i++ {
			b[i] = "java.lang.String@"[i%17]
		}
	}); err != nil {
		t.Fatal(err)
	}
	return fileSHA(t, p)
}

func zstdSHA(t testing.TB, p string) string {
	t.Helper()
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Fatalf("Debian's zstd is needed (apt-get install -y zstd): %v", err)
	}
	out, err := exec.Command("sh", "-c", `zstd -q -d -c "$1" | sha256sum`, "sh", p).Output()
	if err != nil {
		t.Fatalf("zstd -d %s: %v", p, err)
	}
	return strings.Fields(string(out))[0]
}

// A temporary file changed on the server between two runs: a longer one (writes that were sent but not
// acknowledged, or junk) is cut back to the acknowledged prefix and continued; a shorter one, or one whose
// acknowledged bytes changed, starts over with an Event. The archived file is intact in every case.
func TestResumeChecksTheServersTemporaryFile(t *testing.T) {
	for _, tc := range []struct {
		name      string
		edit      func(t *testing.T, p string, acked int64)
		continued bool
	}{
		{"extended", func(t *testing.T, p string, _ int64) { appendBytes(t, p, 3<<20) }, true},
		{"truncated", func(t *testing.T, p string, acked int64) {
			if err := os.Truncate(p, acked-1000); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"changed", func(t *testing.T, p string, acked int64) {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("not what was sent"), acked-100); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			pod := e.pod("ns", "edited")
			sum := writeRandom(t, filepath.Join(e.root, pod, "app", "heap.hprof"), 48<<20, 5)
			cfg := e.config()
			cfg.BytesPerSecond = 16 << 20
			r := e.start(cfg, Deps{})
			var acked int64
			waitFor(t, time.Minute, "two chunks acknowledged", func() bool {
				for _, it := range r.a.journal.Items() {
					if it.Progress != nil {
						acked = it.Progress.Stored
					}
				}
				return acked >= 16<<20
			})
			r.stop()
			acked = e.acknowledged(t)
			var tmp string
			for _, f := range e.serverFiles() {
				if strings.Contains(f, api.TempFileMarker) {
					tmp = filepath.Join(e.srv.DataDir, f)
				}
			}
			if tmp == "" {
				t.Fatalf("no temporary file on the server after the interruption: %v", e.serverFiles())
			}
			tc.edit(t, tmp, acked)

			r2 := e.start(cfg, Deps{})
			dst := e.archived(pod, "app/heap.hprof")
			waitFor(t, time.Minute, "the dump archived", func() bool { return exists(dst) })
			if got := fileSHA(t, dst); got != sum {
				t.Fatalf("server sha256 %s, want %s", got, sum)
			}
			cont := metricValue(t, r2.a.m.resumes.WithLabelValues(ResumeContinued))
			restarted := metricValue(t, r2.a.m.resumes.WithLabelValues(ResumeRestarted))
			events := r2.rec.count(api.ReasonArchiveUploadRestarted)
			if tc.continued && (cont != 1 || restarted != 0 || events != 0) {
				t.Fatalf("continued %v, restarted %v, %d restart Events: want it continued", cont, restarted, events)
			}
			if !tc.continued && (cont != 0 || restarted != 1 || events != 1) {
				t.Fatalf("continued %v, restarted %v, %d restart Events: want it started over with an Event", cont, restarted, events)
			}
			if b := metricValue(t, r2.a.m.bytes); tc.continued && b > float64(48<<20-acked+8<<20) {
				t.Fatalf("the resumed upload sent %v bytes; %d were left after the acknowledged %d", b, 48<<20-acked, acked)
			}
		})
	}
}

func appendBytes(t *testing.T, p string, n int) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
}
