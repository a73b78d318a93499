package archiver

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/policy"
)

// The SIGKILL test re-executes this test binary as a child process that runs
// an archiver (the usual Go pattern for crash tests): TestMain sees the
// environment variable and runs the child instead of the tests.

const childEnv = "KEEPLOG_ARCHIVER_CHILD_SPEC"

type childSpec struct {
	Root, StateDir, TargetFile string
	BytesPerSecond             int64
	Compression                string // the pod policy's, e.g. "zstd:3"
	// S3TargetFile, when set, is an S3 target (JSON) used instead of TargetFile.
	S3TargetFile string
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	os.Exit(m.Run())
}

func runChild(specFile string) int {
	b, err := os.ReadFile(specFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	var spec childSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	tg, d, err := childDialer(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	log := funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{Verbosity: 1})
	a, err := New(Config{NodeName: "node-k", Target: tg, QuietPeriod: 200 * time.Millisecond, PollInterval: 50 * time.Millisecond,
		MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, BytesPerSecond: spec.BytesPerSecond},
		Deps{Root: spec.Root, StateDir: spec.StateDir, Dialer: d, Log: log, Policy: func(string) policy.ArchivePolicy {
			algo, level := describeCompression(spec.Compression)
			if spec.Compression == "" {
				algo = ""
			}
			return policy.ArchivePolicy{Compression: algo, CompressionLevel: level}
		}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// childDialer is the child's SFTP or S3 dialer and target.
func childDialer(spec childSpec) (Target, Dialer, error) {
	if spec.S3TargetFile != "" {
		st, err := LoadS3Target(spec.S3TargetFile)
		if err != nil {
			return Target{}, nil, err
		}
		d, err := NewS3Dialer(st, S3DialerOptions{NodeName: "node-k", Timeout: 10 * time.Second})
		return Target{BaseDir: st.BaseDir()}, d, err
	}
	tg, err := LoadTarget(spec.TargetFile)
	if err != nil {
		return Target{}, nil, err
	}
	d, err := NewSSHDialer(tg, SSHDialerOptions{ConnectTimeout: 10 * time.Second})
	return tg, d, err
}

func TestSIGKILLMidUploadEachFileOnceAndIntact(t *testing.T) {
	// The 10 kills; -short makes it 5 for quick loops.
	kills, files, size := 10, 12, int64(64<<20)
	if testing.Short() {
		kills, files, size = 5, 8, 32<<20
	}
	const rate = 64 << 20 // so that an upload takes a while
	uploadTime := time.Duration(float64(size) / rate * float64(time.Second))

	e := newEnv(t)
	pod := e.pod("ns", "crashy")
	sums := map[string]string{}
	for i := 0; i < files; i++ {
		rel := "app/dump" + strconv.Itoa(i) + ".hprof"
		sums[rel] = writeRandom(t, filepath.Join(e.root, pod, rel), size, uint64(100+i))
	}
	dir := t.TempDir()
	tb, _ := json.Marshal(e.target())
	targetFile := filepath.Join(dir, "target.json")
	specFile := filepath.Join(dir, "spec.json")
	sb, _ := json.Marshal(childSpec{Root: e.root, StateDir: e.state, TargetFile: targetFile, BytesPerSecond: rate})
	if err := os.WriteFile(targetFile, tb, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(specFile, sb, 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "child.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	startChild := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+specFile)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	childLog := func() string {
		b, _ := os.ReadFile(logFile.Name())
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		return string(b)
	}
	// inodes of finished files when first seen: a repeated upload would
	// rename a new file over it.
	inodes := map[string]uint64{}
	noteFinals := func() {
		for rel := range sums {
			if st, err := os.Stat(e.archived(pod, rel)); err == nil {
				ino := st.Sys().(*syscall.Stat_t).Ino
				if old, ok := inodes[rel]; ok && old != ino {
					t.Fatalf("%s was uploaded again after it was finished", rel)
				}
				inodes[rel] = ino
			}
		}
	}
	tempWithData := func() bool {
		for _, f := range e.serverFiles() {
			if strings.Contains(f, api.TempFileMarker) && !strings.Contains(f, manifestSuffix) {
				if st, err := os.Stat(filepath.Join(e.srv.DataDir, f)); err == nil && st.Size() > 0 {
					return true
				}
			}
		}
		return false
	}

	midUpload := 0
	for round := 0; midUpload < kills; round++ {
		if round > 4*kills {
			t.Fatalf("only %d of %d kills landed mid-upload in %d rounds", midUpload, kills, round)
		}
		cmd := startChild()
		deadline := time.Now().Add(time.Minute)
		for !tempWithData() && len(inodes) < files {
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("round %d: no upload started within a minute; child log:\n%s", round, childLog())
			}
			time.Sleep(5 * time.Millisecond)
			noteFinals()
		}
		if len(inodes) == files {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("all files finished after %d kills mid-upload; want %d", midUpload, kills)
		}
		// Two uploads share the rate, so a pair takes 2*uploadTime. Uploads resume, so every run's progress
		// is kept: the kills come within half an upload time of the start (every fourth one two upload times
		// later, so that some files finish between kills), and ten of them land before all files are through. (Before resume, each kill restarted
		// the uploads under way, and the kills could be three upload times apart.)
		delay := time.Duration(rand.Int64N(int64(uploadTime / 2)))
		if round%4 == 0 {
			delay += 2 * uploadTime
		}
		time.Sleep(delay)
		mid := tempWithData()
		if os.Getenv("KEEPLOG_TEST_LOG") != "" {
			t.Logf("round %d: mid=%v finished=%d delay=%v files=%v", round, mid, len(inodes), delay, e.serverFiles())
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if mid {
			midUpload++
		}
		noteFinals()
	}
	t.Logf("%d kills mid-upload; %d of %d files were finished by then", midUpload, len(inodes), files)
	if os.Getenv("KEEPLOG_TEST_LOG") != "" {
		t.Log(childLog())
	}

	// A last run completes everything.
	cmd := startChild()
	deadline := time.Now().Add(3 * time.Minute)
	for len(inodes) < files {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("only %d of %d files archived; child log:\n%s", len(inodes), files, childLog())
		}
		time.Sleep(20 * time.Millisecond)
		noteFinals()
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child did not stop cleanly on SIGTERM: %v\n%s", err, childLog())
	}
	noteFinals()

	// Exactly the files and their manifests, each intact, nothing else.
	want := map[string]bool{}
	for rel, sum := range sums {
		p := e.archived(pod, rel)
		if got := fileSHA(t, p); got != sum {
			t.Fatalf("%s: server sha256 %s, want %s", rel, got, sum)
		}
		if m := readManifest(t, p); m.SHA256 != sum || m.Size != size {
			t.Fatalf("%s: manifest %+v", rel, m)
		}
		r1, _ := filepath.Rel(e.srv.DataDir, p)
		want[r1], want[r1+manifestSuffix] = true, true
	}
	got := e.serverFiles()
	for _, f := range got {
		if !want[f] {
			t.Errorf("unexpected file on the server: %s", f)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d files on the server, want %d: %v", len(got), len(want), got)
	}
	j, _, err := OpenJournal(e.state)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range j.Items() {
		if it.State != StateDone {
			t.Fatalf("journal item %s is %s", it.Rel, it.State)
		}
	}
}
