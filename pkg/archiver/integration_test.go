package archiver

// Tests against a real OpenSSH sshd (internal/sshdtest). They need root and
// /usr/sbin/sshd; they fail (never skip) without them.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/keeplog/keeplog/internal/fstest"
	"github.com/keeplog/keeplog/internal/loopfs"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
)

// bigSize is the 1 GiB; -short makes it 256 MiB for quick loops.
func bigSize() int64 {
	if testing.Short() {
		return 256 << 20
	}
	return 1 << 30
}

func TestUploadVerifiedWithManifest(t *testing.T) {
	e := newEnv(t)
	pod := e.pod("team-a", "web-7d9f")
	size := bigSize()
	big := filepath.Join(e.root, pod, "app", "java_pid1.hprof")
	bigSum := writeRandom(t, big, size, 1)
	coreSum := writeRandom(t, filepath.Join(e.root, pod, "app", "core.123"), 4096+7, 2)
	writeRandom(t, filepath.Join(e.root, pod, "app", "app.log"), 1000, 3) // not matching
	if err := os.MkdirAll(filepath.Join(e.root, pod, api.KeeplogDir), 0o755); err != nil {
		t.Fatal(err)
	}
	writeRandom(t, filepath.Join(e.root, pod, api.KeeplogDir, "meta.hprof"), 1000, 4) // keeplog's own directory

	r := e.start(e.config(), Deps{})
	dst := e.archived(pod, "app/java_pid1.hprof")
	waitFor(t, 5*time.Minute, "the dump on the server", func() bool { return exists(dst) && exists(e.archived(pod, "app/core.123")) })

	if got := fileSHA(t, dst); got != bigSum {
		t.Fatalf("server copy sha256 %s, local %s", got, bigSum)
	}
	if got := fileSHA(t, e.archived(pod, "app/core.123")); got != coreSum {
		t.Fatalf("core sha256 %s, want %s", got, coreSum)
	}
	m := readManifest(t, dst)
	st, _ := os.Stat(big)
	ref, _ := store.ParsePodDirName(pod)
	want := Manifest{Namespace: "team-a", Pod: "web-7d9f", UID: ref.UID, Node: "node-a", Container: "app",
		Path: "app/java_pid1.hprof", Size: size, SHA256: bigSum, Compression: "none", StoredSize: size, StoredSHA256: bigSum,
		Mtime: st.ModTime().UTC()}
	m.UploadedAt, m.Item = time.Time{}, ""
	if m != want {
		t.Fatalf("manifest\n got %+v\nwant %+v", m, want)
	}
	if exists(e.archived(pod, "app/app.log")) {
		t.Fatal("a file not matching the patterns was uploaded")
	}
	if exists(e.archived(pod, api.KeeplogDir+"/meta.hprof")) {
		t.Fatal("a file in the pod's .keeplog directory was uploaded")
	}
	for _, f := range e.serverFiles() {
		if strings.Contains(f, api.TempFileMarker) {
			t.Fatalf("temporary file left on the server: %s", f)
		}
	}
	waitFor(t, 10*time.Second, "status file says done", func() bool {
		fs := statusOf(readStatus(t, e.root, pod), "app/java_pid1.hprof")
		return len(fs) == 1 && fs[0].State == string(StateDone) && fs[0].SHA256 == bigSum
	})
	if n := metricValue(t, r.a.m.uploads.WithLabelValues(ResultSuccess)); n != 2 {
		t.Fatalf("uploads_total{success} = %v, want 2", n)
	}
	if b := metricValue(t, r.a.m.bytes); b != float64(size+4096+7) {
		t.Fatalf("uploaded_bytes_total = %v, want %d", b, size+4096+7)
	}
	if n := r.rec.count(api.ReasonArchived); n != 2 {
		t.Fatalf("%d Archived events, want 2: %v", n, r.rec.all())
	}
	// The metrics are registered with the injected registry.
	if n, err := seriesCount(r.reg, "keeplog_archiver_uploads_total", "keeplog_archiver_queue_depth",
		"keeplog_archiver_upload_duration_seconds", "keeplog_archiver_uploaded_bytes_total"); err != nil || n != 8 {
		t.Fatalf("gathered %d series (%v), want 8", n, err)
	}

	// A restart does not upload anything again.
	r.stop()
	before, _ := os.Stat(dst)
	r2 := e.start(e.config(), Deps{})
	time.Sleep(time.Second) // several poll and settle rounds
	r2.stop()
	after, _ := os.Stat(dst)
	if !os.SameFile(before, after) || metricValue(t, r2.a.m.uploads.WithLabelValues(ResultSuccess)) != 0 {
		t.Fatal("a finished upload was repeated after a restart")
	}
}

func TestFileOpenForWritingIsNotUploadedUntilClosed(t *testing.T) {
	e := newEnv(t)
	pod := e.pod("ns", "writer")
	p := filepath.Join(e.root, pod, "app", "heap.hprof")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("first half,")); err != nil {
		t.Fatal(err)
	}
	r := e.start(e.config(), Deps{})
	// A closed file in the same pod shows that the archiver is working
	// while the open one waits.
	for i := 0; i < 3; i++ {
		ctl := filepath.Join(e.root, pod, "app", "control"+strconv.Itoa(i)+".hprof")
		writeRandom(t, ctl, 1000, uint64(i))
		waitFor(t, time.Minute, "control file uploaded", func() bool { return exists(e.archived(pod, "app/control"+strconv.Itoa(i)+".hprof")) })
	}
	if exists(e.archived(pod, "app/heap.hprof")) {
		t.Fatal("a file open for writing was uploaded")
	}
	if fs := statusOf(readStatus(t, e.root, pod), "app/heap.hprof"); len(fs) != 1 || fs[0].State != StatusSettling {
		t.Fatalf("status of the open file: %+v, want settling", fs)
	}
	if !r.a.Pending(filepath.Join(e.root, pod)) {
		t.Fatal("Pending is false while a dump of the pod is still open for writing")
	}
	quiet := e.pod("ns", "quiet")
	writeRandom(t, filepath.Join(e.root, quiet, "app", "app.log"), 100, 9) // nothing to archive
	waitFor(t, time.Minute, "a pod without dumps is not pending", func() bool { return !r.a.Pending(quiet) })
	if _, err := f.Write([]byte(" second half")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	dst := e.archived(pod, "app/heap.hprof")
	waitFor(t, time.Minute, "the closed file on the server", func() bool { return exists(dst) })
	waitFor(t, 10*time.Second, "nothing pending once uploaded", func() bool { return !r.a.Pending(pod) })
	if b, _ := os.ReadFile(dst); string(b) != "first half, second half" {
		t.Fatalf("server copy %q", b)
	}
	items := 0
	for _, it := range r.a.journal.Items() {
		if it.Rel == "app/heap.hprof" {
			items++
		}
	}
	if items != 1 {
		t.Fatalf("%d journal items for the file, want 1 (an early partial upload would add one)", items)
	}
}

func TestServerStoppedDuringUploadsThenRestarted(t *testing.T) {
	e := newEnv(t)
	pod := e.pod("ns", "outage")
	sums := map[string]string{}
	for i := 0; i < 3; i++ {
		name := "app/d" + strconv.Itoa(i) + ".hprof"
		sums[name] = writeRandom(t, filepath.Join(e.root, pod, name), 48<<20, uint64(10+i))
	}
	cfg := e.config()
	cfg.BytesPerSecond = 48 << 20 // about a second per file
	r := e.start(cfg, Deps{})
	waitFor(t, time.Minute, "an upload in progress", func() bool {
		for _, f := range e.serverFiles() {
			if strings.Contains(f, api.TempFileMarker) {
				return true
			}
		}
		return false
	})
	waitFor(t, time.Minute, "a chunk acknowledged", func() bool {
		for _, it := range r.a.journal.Items() {
			if it.Progress != nil && it.Progress.Stored > 0 {
				return true
			}
		}
		return false
	})
	e.srv.Stop()
	waitFor(t, time.Minute, "a failed attempt", func() bool { return r.rec.count(api.ReasonArchiveRetrying) > 0 })
	time.Sleep(1500 * time.Millisecond) // the server stays away for a while: more attempts fail
	e.srv.Start()
	for name, sum := range sums {
		dst := e.archived(pod, name)
		waitFor(t, 2*time.Minute, name+" on the server", func() bool { return exists(dst) })
		if got := fileSHA(t, dst); got != sum {
			t.Fatalf("%s: server sha256 %s, want %s", name, got, sum)
		}
	}
	if n := metricValue(t, r.a.m.uploads.WithLabelValues(ResultRetry)); n < 1 {
		t.Fatalf("uploads_total{retry} = %v, want >= 1", n)
	}
	// The server kept the temporary files: the uploads continued from what it had acknowledged.
	if n := metricValue(t, r.a.m.resumes.WithLabelValues(ResumeContinued)); n < 1 {
		t.Fatalf("upload_resumes_total{continued} = %v, want >= 1 after a server restart", n)
	}
}

func TestRateLimitHonoured(t *testing.T) {
	e := newEnv(t)
	pod := e.pod("ns", "rate")
	const limit = 8 << 20
	var total int64
	for i := 0; i < 2; i++ {
		writeRandom(t, filepath.Join(e.root, pod, "app", "r"+strconv.Itoa(i)+".hprof"), 12<<20, uint64(i))
		total += 12 << 20
	}
	cfg := e.config()
	cfg.BytesPerSecond = limit
	cfg.MaxConcurrentUploads = 2 // the limit is for the node, not per upload
	// Watch the server side: the bytes that arrived, sampled, between 10 % and 90 % of the total, so that the
	// SSH handshakes before and the verification and renames after (slow under -race on a busy machine) do not
	// count, only the transfer the limit governs.
	type sample struct {
		at    time.Time
		bytes int64
	}
	var samples []sample
	e.start(cfg, Deps{})
	for deadline := time.Now().Add(2 * time.Minute); ; {
		now := time.Now()
		var got int64
		finals := 0
		for _, f := range e.serverFiles() {
			if !strings.Contains(f, ".hprof") || strings.HasSuffix(f, manifestSuffix) || strings.Contains(f, manifestSuffix+api.TempFileMarker) {
				continue
			}
			if st, err := os.Stat(filepath.Join(e.srv.DataDir, f)); err == nil {
				got += st.Size()
			}
			if strings.HasSuffix(f, ".hprof") && !strings.Contains(f, api.TempFileMarker) {
				finals++
			}
		}
		samples = append(samples, sample{now, got})
		if finals == 2 {
			break
		}
		if now.After(deadline) {
			t.Fatal("timed out waiting for the uploads")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var from, to sample
	for _, sm := range samples {
		if from.at.IsZero() && sm.bytes >= total/10 {
			from = sm
		}
		if sm.bytes <= total*9/10 {
			to = sm
		}
	}
	if from.at.IsZero() || !to.at.After(from.at) {
		t.Fatalf("too few samples to measure a rate: %d", len(samples))
	}
	rate := float64(to.bytes-from.bytes) / to.at.Sub(from.at).Seconds()
	t.Logf("achieved %.2f MiB/s with a limit of %.2f MiB/s (%d samples)", rate/(1<<20), float64(limit)/(1<<20), len(samples))
	// The promise is the bound: never above the limit (unlimited, loopback runs at hundreds of MiB/s). Below it
	// is not a failure: on a loaded machine the upload itself can be slower than the limit (a CI run under load
	// reached 5.85 of 8 MiB/s); how close it gets is a benchmark's figure (BenchmarkUploadRateLimited).
	if rate > 1.1*limit {
		t.Fatalf("achieved %.0f B/s, limit %d B/s: more than 10%% above it", rate, limit)
	}
}

func TestSymlinksAreNeverFollowed(t *testing.T) {
	e := newEnv(t)
	pod := e.pod("ns", "links")
	outside := t.TempDir()
	secret := filepath.Join(outside, "host-secret")
	if err := os.WriteFile(secret, []byte("HOST SECRET CONTENT"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(outside, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	hostDir := filepath.Join(outside, "dumps")
	if err := os.Mkdir(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "other.hprof"), []byte("HOST SECRET CONTENT"), 0o600); err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(e.root, pod, "app")
	for link, target := range map[string]string{"x.hprof": secret, "y.hprof": fifo, "linked": hostDir} {
		if err := os.Symlink(target, filepath.Join(app, link)); err != nil {
			t.Fatal(err)
		}
	}
	// A whole container directory that is a symlink.
	if err := os.Symlink(hostDir, filepath.Join(e.root, pod, "sidecar")); err != nil {
		t.Fatal(err)
	}
	r := e.start(e.config(), Deps{})
	// A real dump in the same pod: once it is archived (after a rescan),
	// the symlinks have been seen.
	writeRandom(t, filepath.Join(app, "real.hprof"), 1000, 1)
	waitFor(t, time.Minute, "the real dump archived", func() bool { return exists(e.archived(pod, "app/real.hprof")) })
	waitFor(t, time.Minute, "the symlinks reported", func() bool { return r.rec.count(api.ReasonArchiveRejected) >= 2 })
	time.Sleep(2500 * time.Millisecond) // past one periodic rescan too
	for _, f := range e.serverFiles() {
		b, _ := os.ReadFile(filepath.Join(e.srv.DataDir, f))
		if strings.Contains(string(b), "HOST SECRET") {
			t.Fatalf("host content uploaded as %s", f)
		}
		if !strings.Contains(f, "real.hprof") {
			t.Fatalf("unexpected file on the server: %s", f)
		}
	}
	// Nobody opened the FIFO: a non-blocking open for writing fails with
	// ENXIO when no reader has it open.
	if fd, err := syscall.Open(fifo, syscall.O_WRONLY|syscall.O_NONBLOCK, 0); !errors.Is(err, syscall.ENXIO) {
		if err == nil {
			syscall.Close(fd)
		}
		t.Fatalf("the FIFO behind y.hprof has a reader (open: %v): the symlink was followed", err)
	}
	ps := readStatus(t, e.root, pod)
	for _, rel := range []string{"app/x.hprof", "app/y.hprof"} {
		if fs := statusOf(ps, rel); len(fs) != 1 || fs[0].State != StatusRejected {
			t.Fatalf("status of %s: %+v, want rejected", rel, fs)
		}
	}
	// Direct: the opener refuses a symlink and a symlinked directory.
	if _, _, err := r.a.fs.open(pod, "app/x.hprof"); !errors.Is(err, errNotRegular) {
		t.Fatalf("open of a symlink: %v", err)
	}
	if _, _, err := r.a.fs.open(pod, "app/linked/other.hprof"); !errors.Is(err, errNotRegular) {
		t.Fatalf("open through a symlinked directory: %v", err)
	}
	if _, _, err := r.a.fs.open(pod, "sidecar/other.hprof"); !errors.Is(err, errNotRegular) {
		t.Fatalf("open through a symlinked container directory: %v", err)
	}
}

func TestUnknownHostKeyRefused(t *testing.T) {
	e := newEnv(t)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewPublicKey(pub)
	tg := e.target()
	tg.KnownHosts = knownhosts.Line([]string{knownhosts.Normalize(e.srv.Addr())}, other) + "\n"
	d := e.dialer(tg)
	_, err := d.Dial(context.Background())
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 || !strings.HasPrefix(err.Error(), "the server's host key is not the one knownHosts names") {
		t.Fatalf("dial with a wrong host key: %v, want a knownhosts key mismatch that says so first", err)
	}
	// A host not in known_hosts at all.
	tg.KnownHosts = knownhosts.Line([]string{"[other.example]:22"}, other) + "\n"
	if _, err := e.dialer(tg).Dial(context.Background()); !errors.As(err, &ke) || len(ke.Want) != 0 ||
		!strings.HasPrefix(err.Error(), "the server is not in knownHosts") {
		t.Fatalf("dial with an unknown host: %v, want knownhosts: key is unknown, said first", err)
	}
	// The archiver does not upload through it.
	pod := e.pod("ns", "hostkey")
	writeRandom(t, filepath.Join(e.root, pod, "app", "a.hprof"), 1000, 1)
	cfg := e.config()
	cfg.Target = tg
	r := e.start(cfg, Deps{Dialer: d})
	waitFor(t, time.Minute, "a refused attempt", func() bool { return r.rec.count(api.ReasonArchiveRetrying) > 0 })
	if ev := r.rec.all(); !strings.Contains(strings.Join(ev, "\n"), "knownhosts") {
		t.Fatalf("events do not say why: %v", ev)
	}
	if f := e.serverFiles(); len(f) != 0 {
		t.Fatalf("files reached the server: %v", f)
	}
	// The right key works with the same setup.
	if _, err := e.dialer(e.target()).Dial(context.Background()); err != nil {
		t.Fatalf("dial with the right host key: %v", err)
	}
}

// TestClusterSemaphoreSerialisesArchivers runs two archivers (two "nodes")
// sharing a semaphore: with one slot the server never sees two uploads at
// once; with two slots (the control) it does.
func TestClusterSemaphoreSerialisesArchivers(t *testing.T) {
	for _, slots := range []int{1, 2} {
		t.Run("slots="+strconv.Itoa(slots), func(t *testing.T) {
			e := newEnv(t)
			e2 := &env{t: t, srv: e.srv, root: filepath.Join(t.TempDir(), "root2")}
			e2.state = filepath.Join(e2.root, ".keeplog", "archiver")
			if err := os.MkdirAll(e2.state, 0o755); err != nil {
				t.Fatal(err)
			}
			sem := NewLocalSemaphore(slots)
			var dirs []string
			for i, en := range []*env{e, e2} {
				pod := en.pod("ns", "sem"+strconv.Itoa(i))
				for j := 0; j < 3; j++ {
					writeRandom(t, filepath.Join(en.root, pod, "app", "s"+strconv.Itoa(j)+".hprof"), 16<<20, uint64(j))
				}
				d := filepath.Dir(en.archived(pod, "app/s0.hprof"))
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
				dirs = append(dirs, d)
			}
			uid, gid := ownerOf(t, e.srv.DataDir)
			_ = filepath.Walk(e.srv.DataDir, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, uid, gid) })
			tw, err := fstest.WatchTemps(dirs, func(base string) bool {
				return strings.Contains(base, api.TempFileMarker) && !strings.Contains(base, manifestSuffix)
			})
			if err != nil {
				t.Fatal(err)
			}
			cfg := e.config()
			cfg.BytesPerSecond = 32 << 20 // half a second per file and node
			cfg.NodeName = "node-a"
			e.start(cfg, Deps{Semaphore: sem})
			cfg.NodeName = "node-b"
			e2.start(cfg, Deps{Semaphore: sem})
			waitFor(t, 2*time.Minute, "all six uploads", func() bool {
				n := 0
				for _, f := range e.serverFiles() {
					if strings.HasSuffix(f, ".hprof") && !strings.Contains(f, api.TempFileMarker) {
						n++
					}
				}
				return n == 6
			})
			rep := tw.Stop()
			peak := rep.Peak
			t.Logf("at most %d uploads at once on the server", peak)
			if rep.Lost {
				t.Fatalf("the watch on the server lost events (an inotify queue overflow): %+v", rep)
			}
			if slots == 1 && peak != 1 {
				t.Fatalf("%d uploads at once with a semaphore of 1", peak)
			}
			if slots == 2 && peak < 2 {
				t.Fatalf("the control run never saw two uploads at once (peak %d): the check cannot see overlaps", peak)
			}
		})
	}
}

func ownerOf(t *testing.T, p string) (int, int) {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Sys().(*syscall.Stat_t)
	return int(s.Uid), int(s.Gid)
}

func TestFirstOnlyAndDeleteAfterUpload(t *testing.T) {
	e := newEnv(t)
	podA := e.pod("ns", "first")
	podB := e.pod("ns", "delete")
	var mu sync.Mutex
	reset := ""
	pol := func(pod string) policy.ArchivePolicy {
		mu.Lock()
		defer mu.Unlock()
		if pod == podA {
			return policy.ArchivePolicy{FirstOnly: true, FirstOnlyReset: reset}
		}
		return policy.ArchivePolicy{DeleteAfterUpload: true}
	}
	r := e.start(e.config(), Deps{Policy: pol})

	// firstOnly: the first dump of a container is uploaded, the next is not;
	// another container has its own first.
	writeRandom(t, filepath.Join(e.root, podA, "app", "one.hprof"), 1000, 1)
	waitFor(t, time.Minute, "one.hprof archived", func() bool { return exists(e.archived(podA, "app/one.hprof")) })
	writeRandom(t, filepath.Join(e.root, podA, "app", "two.hprof"), 1000, 2)
	if err := os.MkdirAll(filepath.Join(e.root, podA, "side"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeRandom(t, filepath.Join(e.root, podA, "side", "s.hprof"), 1000, 3)
	waitFor(t, time.Minute, "side/s.hprof archived", func() bool { return exists(e.archived(podA, "side/s.hprof")) })
	waitFor(t, time.Minute, "two.hprof skipped", func() bool {
		fs := statusOf(readStatus(t, e.root, podA), "app/two.hprof")
		return len(fs) == 1 && fs[0].State == string(StateSkipped)
	})
	if exists(e.archived(podA, "app/two.hprof")) {
		t.Fatal("firstOnly: the second dump was uploaded")
	}
	// A reset (annotation changed): the next dump is a new first.
	mu.Lock()
	reset = "2"
	mu.Unlock()
	writeRandom(t, filepath.Join(e.root, podA, "app", "three.hprof"), 1000, 4)
	waitFor(t, time.Minute, "three.hprof archived after the reset", func() bool { return exists(e.archived(podA, "app/three.hprof")) })
	if exists(e.archived(podA, "app/two.hprof")) {
		t.Fatal("firstOnly: the skipped dump was uploaded after the reset")
	}

	// deleteAfterUpload: the local file goes once the upload is verified.
	local := filepath.Join(e.root, podB, "app", "gone.hprof")
	sum := writeRandom(t, local, 3<<20, 5)
	waitFor(t, time.Minute, "gone.hprof deleted locally", func() bool { return !exists(local) })
	if got := fileSHA(t, e.archived(podB, "app/gone.hprof")); got != sum {
		t.Fatalf("deleted before a verified upload: server sha256 %s, want %s", got, sum)
	}
	// A new dump with the same name is a new item, archived beside the old.
	sum2 := writeRandom(t, local, 2000, 6)
	waitFor(t, time.Minute, "second gone.hprof deleted locally", func() bool { return !exists(local) })
	second := strings.TrimSuffix(e.archived(podB, "app/gone.hprof"), ".hprof") + ".2.hprof"
	if got := fileSHA(t, second); got != sum2 {
		t.Fatalf("second file with the same name: sha256 %s, want %s", got, sum2)
	}
	waitFor(t, 10*time.Second, "status says deleted", func() bool {
		fs := statusOf(readStatus(t, e.root, podB), "app/gone.hprof")
		return len(fs) == 2 && fs[0].Deleted && fs[1].Deleted
	})
	_ = r
}

// deleteAfterUpload on a volume blocked over its limit (the immutable attribute, on a real ext4): the dump is
// uploaded, its deletion is refused with EPERM and tried again at each scan with one Event, and it goes once the
// block is lifted.
func TestDeleteAfterUploadWaitsForABlockedVolume(t *testing.T) {
	e := newEnv(t)
	e.root = filepath.Join(loopfs.ForTest(t, 64), "root")
	e.state = filepath.Join(e.root, ".keeplog", "archiver")
	if err := os.MkdirAll(e.state, 0o755); err != nil {
		t.Fatal(err)
	}
	pod := e.pod("ns", "blocked")
	dump := filepath.Join(e.root, pod, "app", "java_pid1.hprof")
	sum := writeRandom(t, dump, 1<<20, 7)
	chattr := func(op string) {
		t.Helper()
		if out, err := exec.Command("chattr", op, filepath.Dir(dump), dump).CombinedOutput(); err != nil {
			t.Fatalf("chattr %s: %v: %s", op, err, out)
		}
	}
	chattr("+i")
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", filepath.Dir(dump), dump).Run() }) // or the mount cannot go
	r := e.start(e.config(), Deps{Policy: func(string) policy.ArchivePolicy { return policy.ArchivePolicy{DeleteAfterUpload: true} }})
	waitFor(t, time.Minute, "the dump archived", func() bool { return exists(e.archived(pod, "app/java_pid1.hprof")) })
	if got := fileSHA(t, e.archived(pod, "app/java_pid1.hprof")); got != sum {
		t.Fatalf("server copy sha256 %s, want %s", got, sum)
	}
	waitFor(t, time.Minute, "the refused deletion in the status file", func() bool {
		fs := statusOf(readStatus(t, e.root, pod), "app/java_pid1.hprof")
		return len(fs) == 1 && strings.Contains(fs[0].Error, "operation not permitted") && !fs[0].Deleted
	})
	time.Sleep(5 * time.Second) // two more scans (every 2 s) try again
	if !exists(dump) {
		t.Fatal("the dump is gone although its directory is immutable")
	}
	if n := r.rec.count(api.ReasonArchiveFailed); n != 1 {
		t.Fatalf("%d %s Events for one refused deletion, want 1", n, api.ReasonArchiveFailed)
	}
	chattr("-i")
	waitFor(t, time.Minute, "the dump deleted once the block is lifted", func() bool { return !exists(dump) })
	waitFor(t, time.Minute, "the status file says deleted", func() bool {
		fs := statusOf(readStatus(t, e.root, pod), "app/java_pid1.hprof")
		return len(fs) == 1 && fs[0].Deleted && fs[0].Error == ""
	})
}

// blockingWriters answers every search for writers at once, except the first, which blocks until release is closed
// (a stat on a hung network filesystem).
type blockingWriters struct {
	calls   atomic.Int32
	release chan struct{}
}

func (b *blockingWriters) OpenForWriting(map[FileID]bool) (map[FileID]bool, error) {
	if b.calls.Add(1) == 1 {
		<-b.release
	}
	return map[FileID]bool{}, nil
}

// A search for writers that hangs leaves the files waiting, not the archiver: events, status files and (once the
// search returns) uploads go on.
func TestHungWriterSearchDoesNotStopTheArchiver(t *testing.T) {
	e := newEnv(t)
	podA := e.pod("ns", "hung-a")
	b := &blockingWriters{release: make(chan struct{})}
	cfg := e.config()
	cfg.WriterScanTimeout = 500 * time.Millisecond
	e.start(cfg, Deps{Writers: b})
	released := false
	t.Cleanup(func() { // before the archiver is stopped (cleanups run last first)
		if !released {
			close(b.release)
		}
	})
	writeRandom(t, filepath.Join(e.root, podA, "app", "a.hprof"), 1000, 1)
	waitFor(t, time.Minute, "the search for writers of a.hprof", func() bool { return b.calls.Load() >= 1 })

	podB := e.pod("ns", "hung-b")
	writeRandom(t, filepath.Join(e.root, podB, "app", "b.hprof"), 1000, 2)
	waitFor(t, time.Minute, "b.hprof in the new pod's status file while the search hangs", func() bool {
		if _, err := os.Stat(filepath.Join(e.root, podB, api.ArchiveStatusPath)); err != nil {
			return false
		}
		fs := statusOf(readStatus(t, e.root, podB), "app/b.hprof")
		return len(fs) == 1 && fs[0].State == StatusSettling
	})
	if exists(e.archived(podA, "app/a.hprof")) || b.calls.Load() != 1 {
		t.Fatalf("while the first search hangs: a.hprof uploaded=%v, searches=%d (want no upload, 1 search)",
			exists(e.archived(podA, "app/a.hprof")), b.calls.Load())
	}
	close(b.release)
	released = true
	waitFor(t, time.Minute, "both dumps uploaded once the search returned", func() bool {
		return exists(e.archived(podA, "app/a.hprof")) && exists(e.archived(podB, "app/b.hprof"))
	})
}

// racingWriters simulates a writer that appends to the file and closes it while the search for writers runs (after
// the archiver's stat, before the search looks): the search finds no writer.
type racingWriters struct {
	path  string
	raced atomic.Bool
}

func (r *racingWriters) OpenForWriting(map[FileID]bool) (map[FileID]bool, error) {
	if !r.raced.Swap(true) {
		f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return nil, err
		}
		_, err = f.WriteString(" second half")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
	}
	return map[FileID]bool{}, nil
}

// A file written and closed while the archiver searches for its writers is not finished as it was before: it
// settles again and is uploaded whole, under its own name, without a failed attempt. (CI once saw the old state
// queued, refused at upload as changed, and the whole file uploaded as heap.2.hprof.)
func TestFileWrittenDuringTheWriterSearchSettlesAgain(t *testing.T) {
	e := newEnv(t)
	pod := e.pod("ns", "racer")
	p := filepath.Join(e.root, pod, "app", "heap.hprof")
	if err := os.WriteFile(p, []byte("first half,"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &racingWriters{path: p}
	r := e.start(e.config(), Deps{Writers: w})
	dst := e.archived(pod, "app/heap.hprof")
	waitFor(t, time.Minute, "the file on the server", func() bool { return exists(dst) })
	if !w.raced.Load() {
		t.Fatal("the search for writers never ran")
	}
	if b, _ := os.ReadFile(dst); string(b) != "first half, second half" {
		t.Fatalf("server copy %q, want the whole file", b)
	}
	if n := r.rec.count(api.ReasonArchiveFailed); n != 0 {
		t.Fatalf("%d failed attempts for a file that changed during the search", n)
	}
	if files := e.serverFiles(); slices.ContainsFunc(files, func(f string) bool { return strings.Contains(f, "heap.2.hprof") }) {
		t.Fatalf("a second generation on the server: %v", files)
	}
}

// TestWrongKeySaysWrongCredentials: a private key the real sshd does not accept fails the handshake with the cause
// first (as S3's wrong key says "wrong credentials"), x/crypto/ssh's own text after it, and no key material.
func TestWrongKeySaysWrongCredentials(t *testing.T) {
	e := newEnv(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	tg := e.target()
	tg.PrivateKey = string(pem.EncodeToMemory(block))
	_, err = e.dialer(tg).Dial(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "wrong credentials") || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("dial with a key the server does not accept: %v, want wrong credentials first", err)
	}
	if strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Fatalf("the error quotes the key: %v", err)
	}
}
