package archiver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

func TestSettle(t *testing.T) {
	const quiet = 10 * time.Second
	st := func(size int64, mtime int64) fileState { return fileState{Dev: 1, Ino: 7, Size: size, MtimeNs: mtime} }
	type obs struct {
		at    time.Duration // since t0
		state fileState
	}
	for _, tc := range []struct {
		name        string
		obs         []obs
		checkAt     time.Duration
		unpublished bool
		due         bool
	}{
		{"new file is not finished", []obs{{0, st(10, 1)}}, 5 * time.Second, false, false},
		{"stable for the quiet period", []obs{{0, st(10, 1)}, {5 * time.Second, st(10, 1)}}, 10 * time.Second, false, true},
		{"growth restarts the period", []obs{{0, st(10, 1)}, {8 * time.Second, st(20, 2)}}, 12 * time.Second, false, false},
		{"stable after growth", []obs{{0, st(10, 1)}, {8 * time.Second, st(20, 2)}}, 18 * time.Second, false, true},
		{"mtime change alone restarts", []obs{{0, st(10, 1)}, {9 * time.Second, st(10, 5)}}, 12 * time.Second, false, false},
		{"new inode restarts", []obs{{0, st(10, 1)}, {9 * time.Second, fileState{Dev: 1, Ino: 8, Size: 10, MtimeNs: 1}}}, 12 * time.Second, false, false},
		{"unpublished skips the quiet period", []obs{{0, st(10, 1)}}, time.Second, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
			t0 := clk.Now()
			s := newSettler(quiet)
			for _, o := range tc.obs {
				clk.SetTime(t0.Add(o.at))
				s.observe(podDir{name: "ns_p_1"}, "app/x.hprof", o.state, clk.Now())
			}
			clk.SetTime(t0.Add(tc.checkAt))
			due := s.due(clk.Now(), func(string) bool { return tc.unpublished })
			if got := len(due) == 1; got != tc.due {
				t.Fatalf("due = %v, want %v", got, tc.due)
			}
		})
	}
	// Oldest first.
	s := newSettler(0)
	now := time.Unix(1000, 0)
	s.observe(podDir{name: "p"}, "b", fileState{Ino: 1, MtimeNs: 20}, now)
	s.observe(podDir{name: "p"}, "a", fileState{Ino: 2, MtimeNs: 10}, now)
	if d := s.due(now, nil); len(d) != 2 || d[0].rel != "a" {
		t.Fatalf("order: %v", d)
	}
}

func TestParsePodDirAndRemotePath(t *testing.T) {
	uid := "0f6c1e5c-3b1a-4b8e-9a43-1d2f3e4a5b6c"
	for _, tc := range []struct {
		dir string
		ok  bool
	}{
		{"default_web-1_" + uid, true},
		{"kube-system_kube-proxy-abc.x_" + uid, true},
		{"default_web_0123456789abcdef0123456789abcdef", true}, // static pod hash
		{".keeplog", false},
		{"default_web", false},
		{"Default_web_" + uid, false},     // namespace not a DNS label
		{"default_web_pod_" + uid, false}, // extra underscore
		{"default_-web_" + uid, false},
		{"default_web_UID", false},
		{"default_web_../../x", false},
		{"a.b_web_" + uid, false}, // namespace with a dot
	} {
		_, err := store.ParsePodDirName(tc.dir)
		if (err == nil) != tc.ok {
			t.Errorf("store.ParsePodDirName(%q) error %v, want ok=%v", tc.dir, err, tc.ok)
		}
	}
	ref := PodRef{Namespace: "ns", Name: "web", UID: uid}
	for _, tc := range []struct{ rel, want string }{
		{"app/java_pid1.hprof", "/archive/ns/web/" + uid + "/app/java_pid1.hprof"},
		{"app/sub dir/core.1", "/archive/ns/web/" + uid + "/app/sub_dir/core.1"},
		{"app/..hprof", "/archive/ns/web/" + uid + "/app/..hprof"},
		{"app/we\nird\x00$(rm).hprof", "/archive/ns/web/" + uid + "/app/we_ird___rm_.hprof"},
		{"app/" + strings.Repeat("x", 300), "/archive/ns/web/" + uid + "/app/" + strings.Repeat("x", 200)},
		{"app/.x.hprof.keeplog-tmp-abc", "/archive/ns/web/" + uid + "/app/_x.hprof.keeplog-tmp-abc"},
	} {
		got, err := RemotePath("/archive", ref, tc.rel)
		if err != nil || got != tc.want {
			t.Errorf("RemotePath(%q) = %q, %v; want %q", tc.rel, got, err, tc.want)
		}
	}
	// Components that are "." or ".." can never escape.
	for _, c := range []string{".", ".."} {
		if s := sanitizeComponent(c); s == c || strings.Contains(s, "/") {
			t.Errorf("sanitizeComponent(%q) = %q", c, s)
		}
	}
	if g := withGeneration("/a/b/java.hprof", 2); g != "/a/b/java.2.hprof" {
		t.Errorf("withGeneration: %q", g)
	}
	if g := withGeneration("/a/b/core", 3); g != "/a/b/core.3" {
		t.Errorf("withGeneration: %q", g)
	}
}

func TestJournalRecovery(t *testing.T) {
	dir := t.TempDir()
	j, warns, err := OpenJournal(dir)
	if err != nil || len(warns) != 0 {
		t.Fatal(err, warns)
	}
	now := time.Unix(1700000000, 0)
	mk := func(rel string, ino uint64, state ItemState) Item {
		return Item{ID: itemID("ns_p_1", rel, ino, 100, 5), PodDir: "ns_p_1", Rel: rel, Ino: ino, Size: 100, MtimeNs: 5, State: state, QueuedAt: now}
	}
	done, err := j.Put(mk("app/a.hprof", 1, StateDone), "/base/a.hprof")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Put(mk("app/b.hprof", 2, StateUploading), "/base/b.hprof"); err != nil {
		t.Fatal(err)
	}
	// Same name, new inode: a new item, and it gets its own remote name.
	again, err := j.Put(mk("app/a.hprof", 3, StateQueued), "/base/a.hprof")
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == done.ID || again.Remote != "/base/a.2.hprof" {
		t.Fatalf("second a.hprof: id %s (first %s), remote %s", again.ID, done.ID, again.Remote)
	}
	if err := j.SetFirst("ns_p_1", "app", "", done.ID); err != nil {
		t.Fatal(err)
	}
	// What a crash leaves: an interrupted temporary write and a torn file.
	items := filepath.Join(dir, "items")
	if err := os.WriteFile(filepath.Join(items, done.ID+".json.tmp123-x"), []byte(`{"id":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(items, "ffff.json"), []byte(`{"id": "ffff", "sta`), 0o600); err != nil {
		t.Fatal(err)
	}

	j2, warns, err := OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0].Error(), "ffff.json") {
		t.Fatalf("warnings %v, want one about ffff.json", warns)
	}
	if _, err := os.Stat(filepath.Join(items, "ffff.json.corrupt")); err != nil {
		t.Fatalf("corrupt entry not moved aside: %v", err)
	}
	if _, err := os.Stat(filepath.Join(items, done.ID+".json.tmp123-x")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file not removed: %v", err)
	}
	if got := len(j2.Items()); got != 3 {
		t.Fatalf("%d items after reopening, want 3", got)
	}
	if it, ok := j2.Get(done.ID); !ok || it.State != StateDone || it.Remote != "/base/a.hprof" {
		t.Fatalf("done item after reopening: %+v", it)
	}
	if j2.active() != 2 {
		t.Fatalf("active = %d, want 2 (queued + interrupted upload)", j2.active())
	}
	if id, ok := j2.First("ns_p_1", "app", ""); !ok || id != done.ID {
		t.Fatalf("firstOnly record lost: %v %v", id, ok)
	}
	if _, ok := j2.First("ns_p_1", "app", "reset-1"); ok {
		t.Fatal("a reset token shares the first record")
	}
	// Claims survive reopening: a third a.hprof gets generation 3.
	third, err := j2.Put(mk("app/a.hprof", 4, StateQueued), "/base/a.hprof")
	if err != nil || third.Remote != "/base/a.3.hprof" {
		t.Fatalf("third a.hprof: %v %v", third.Remote, err)
	}
	if err := j2.Remove(done.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(items, done.ID+".json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("removed item still on disk")
	}
}

func TestBackoffAndLimits(t *testing.T) {
	for _, tc := range []struct {
		attempt  int
		rnd      float64
		min, max time.Duration
	}{
		{1, 0, time.Second / 2, time.Second / 2},
		{1, 0.999999, time.Second / 2, time.Second},
		{3, 0, 2 * time.Second, 2 * time.Second},
		{3, 0.999999, 2 * time.Second, 4 * time.Second},
		{20, 0, 150 * time.Second, 150 * time.Second},
		{2000, 0.999999, 150 * time.Second, 300 * time.Second},
	} {
		d := backoff(tc.attempt, time.Second, 5*time.Minute, func() float64 { return tc.rnd })
		if d < tc.min || d > tc.max {
			t.Errorf("backoff(%d, rnd %v) = %v, want in [%v, %v]", tc.attempt, tc.rnd, d, tc.min, tc.max)
		}
	}
	if newLimiter(0) != nil {
		t.Error("limit 0 must mean unlimited")
	}
	if l := newLimiter(25 << 20); l.Burst() != (25<<20)/50 {
		t.Errorf("burst %d", l.Burst())
	}
	if l := newLimiter(1000); l.Burst() != 32<<10 {
		t.Errorf("small-rate burst %d", l.Burst())
	}

	s := NewLocalSemaphore(1)
	held, rel, err := s.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.Acquire(ctx); err == nil {
		t.Fatal("second holder of a 1-slot semaphore")
	}
	rel()
	rel()
	if held.Err() == nil {
		t.Fatal("release did not cancel the held context")
	}
	if _, rel2, err := s.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	} else {
		rel2()
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Target{}).Validate(); err == nil {
		t.Fatal("empty target accepted")
	} else {
		for _, field := range []string{"host", "user", "privateKey or password", "knownHosts", "baseDir"} {
			if !strings.Contains(err.Error(), field) {
				t.Errorf("error does not name %s: %v", field, err)
			}
		}
	}
	tg := Target{Host: "sftp.example", User: "u", Password: "pw-SECRET", PrivateKey: "not a key SECRET",
		KnownHosts: "garbage", BaseDir: "rel/dir"}
	err := tg.Validate()
	if err == nil {
		t.Fatal("bad target accepted")
	}
	for _, field := range []string{"privateKey", "knownHosts", "baseDir"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
	for _, s := range []string{err.Error(), tg.String(), tg.GoString()} {
		if strings.Contains(s, "SECRET") {
			t.Fatalf("a secret leaked: %s", s)
		}
	}
	// A Secret volume: one file per key.
	dir := t.TempDir()
	e := map[string]string{"host": "127.0.0.1\n", "port": "2222\n", "user": "arch\n", "password": "pw\n",
		"knownHosts": "[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n", "baseDir": "/dumps\n"}
	for k, v := range e {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := LoadTarget(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Host != "127.0.0.1" || got.Port != 2222 || got.User != "arch" || got.Password != "pw" || got.BaseDir != "/dumps" {
		t.Fatalf("LoadTarget: %v", got)
	}
	bad := Config{Target: Target{BaseDir: "x"}, QuietPeriod: -1, BytesPerSecond: -5, MinBackoff: time.Minute, MaxBackoff: time.Second}
	if err := bad.Validate(); err == nil {
		t.Fatal("bad config accepted")
	} else {
		for _, field := range []string{"nodeName", "baseDir", "quietPeriod", "bytesPerSecond", "minBackoff"} {
			if !strings.Contains(err.Error(), field) {
				t.Errorf("error does not name %s: %v", field, err)
			}
		}
	}
}

func TestProcFSFindsWriters(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	w, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	id := FileID{Dev: uint64(st.Dev), Ino: st.Ino}
	check := func() bool {
		got, err := ProcFS{}.OpenForWriting(map[FileID]bool{id: true})
		if err != nil {
			t.Fatal(err)
		}
		return got[id]
	}
	if !check() {
		t.Fatal("a file open for writing was not found")
	}
	w.Close()
	r, err := os.Open(p) // read-only: not a writer
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if check() {
		t.Fatal("a file open read-only counted as open for writing")
	}
	rw, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !check() {
		t.Fatal("a file open O_RDWR was not found")
	}
	rw.Close()
}

func TestStatusFileNeverFollowsSymlinks(t *testing.T) {
	root := t.TempDir()
	pod := "ns_p_0123456789abcdef0123456789abcdef"
	if err := os.MkdirAll(filepath.Join(root, pod, api.KeeplogDir), 0o755); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A symlink planted at the status file's name is replaced, never followed.
	if err := os.Symlink(victim, filepath.Join(root, pod, api.ArchiveStatusPath)); err != nil {
		t.Fatal(err)
	}
	pfs, err := newPodFS(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := pfs.writeOwnFile(pod, api.ArchiveStatusFile, []byte(`{"ok":true}`)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Fatalf("the symlink target was written: %q", b)
	}
	fi, err := os.Lstat(filepath.Join(root, pod, api.ArchiveStatusPath))
	if err != nil || fi.Mode()&os.ModeSymlink != 0 {
		t.Fatalf("status file: %v, %v", fi.Mode(), err)
	}
	// .keeplog/ itself, or the pod directory, replaced by a symlink: refused, nothing written outside.
	outside := t.TempDir()
	pod2 := "ns_q_0123456789abcdef0123456789abcdef"
	if err := os.Symlink(outside, filepath.Join(root, pod2)); err != nil {
		t.Fatal(err)
	}
	if err := pfs.writeOwnFile(pod2, api.ArchiveStatusFile, []byte("x")); !errors.Is(err, errNotRegular) {
		t.Fatalf("write through a symlinked pod directory: %v", err)
	}
	pod3 := "ns_r_0123456789abcdef0123456789abcdef"
	if err := os.MkdirAll(filepath.Join(root, pod3), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, pod3, api.KeeplogDir)); err != nil {
		t.Fatal(err)
	}
	if err := pfs.writeOwnFile(pod3, api.ArchiveStatusFile, []byte("x")); !errors.Is(err, errNotRegular) {
		t.Fatalf("write through a symlinked .keeplog: %v", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("wrote outside: %v", ents)
	}
	// A .keeplog/ the pod made (not root's) gets nothing.
	pod4 := "ns_s_0123456789abcdef0123456789abcdef"
	if err := os.MkdirAll(filepath.Join(root, pod4, api.KeeplogDir), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(root, pod4, api.KeeplogDir), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := pfs.writeOwnFile(pod4, api.ArchiveStatusFile, []byte("x")); err == nil || exists(filepath.Join(root, pod4, api.ArchiveStatusPath)) {
		t.Fatalf("wrote into a .keeplog/ owned by uid 1000: %v", err)
	}
	// A missing .keeplog/ is made root:root 0755.
	pod5 := "ns_t_0123456789abcdef0123456789abcdef"
	if err := os.MkdirAll(filepath.Join(root, pod5), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := pfs.writeOwnFile(pod5, api.ArchiveStatusFile, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(root, pod5, api.KeeplogDir)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf(".keeplog made as %v, %v", fi.Mode(), err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestArchivedComesFromTheJournalAndTheDisk: "archived" is never answered from what the archiver has seen so far.
// A dump nobody has discovered (the archiver is not even running) is pending, at any depth; a directory with no
// matching file, or whose every match is journalled done or skipped, is archived; a failed or queued one is not.
func TestArchivedComesFromTheJournalAndTheDisk(t *testing.T) {
	root := t.TempDir()
	a, err := New(Config{NodeName: "n", Target: Target{BaseDir: "/archive"}},
		Deps{Root: root, StateDir: filepath.Join(root, ".keeplog", "archiver"), Dialer: dialerFunc(nil)})
	if err != nil {
		t.Fatal(err)
	}
	pod := "ns_pod_0123456789abcdef0123456789abcdef"
	if a.Pending(pod) {
		t.Fatal("a pod directory that does not exist is pending")
	}
	if err := os.MkdirAll(filepath.Join(root, pod, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, pod, "app", "gc.log"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if a.Pending(pod) {
		t.Fatal("a directory with no file matching the patterns is pending")
	}
	deep := "app"
	for i := 0; i < 40; i++ {
		deep += "/d" + itoa(i)
	}
	if err := os.MkdirAll(filepath.Join(root, pod, deep), 0o755); err != nil {
		t.Fatal(err)
	}
	rel := deep + "/heap.hprof"
	if err := os.WriteFile(filepath.Join(root, pod, rel), []byte("dump"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok, why := a.Archived(pod)
	if ok || !strings.Contains(why, "heap.hprof is not archived yet") {
		t.Fatalf("an undiscovered dump 40 levels deep: archived %v (%q)", ok, why)
	}
	st, err := a.fs.lstat(pod, rel)
	if err != nil {
		t.Fatal(err)
	}
	it := Item{ID: itemID(pod, rel, st.Ino, st.Size, st.Mtim.Nano()), PodDir: pod, Rel: rel, State: StateFailed, Error: "boom"}
	for _, c := range []struct {
		state ItemState
		want  bool
	}{{StateQueued, false}, {StateUploading, false}, {StateFailed, false}, {StateSkipped, true}, {StateDone, true}} {
		it.State = c.state
		if _, err := a.journal.Put(it, ""); err != nil {
			t.Fatal(err)
		}
		if ok, why := a.Archived(pod); ok != c.want {
			t.Errorf("journalled %s: archived %v (%q), want %v", c.state, ok, why, c.want)
		}
	}
	// The same name with other content is another file: not archived.
	if err := os.WriteFile(filepath.Join(root, pod, rel), []byte("another dump"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !a.Pending(pod) {
		t.Fatal("a rewritten dump counts as archived")
	}
}

// dialerFunc is a Dialer for tests that never connect.
type dialerFunc func(ctx context.Context) (Remote, error)

func (f dialerFunc) Dial(ctx context.Context) (Remote, error) {
	if f == nil {
		return nil, errors.New("test dialer: no server")
	}
	return f(ctx)
}

// An item carries its pod from the moment it enters the journal (Put, or read at start): nothing parses its
// directory name again.
func TestJournalItemsCarryTheirPod(t *testing.T) {
	dir := t.TempDir()
	j, _, err := OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	const podDir = "ns_app_0f8c6a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f"
	want := store.PodRef{Namespace: "ns", Name: "app", UID: "0f8c6a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f"}
	it, err := j.Put(Item{ID: "a", PodDir: podDir, Rel: "app/x.hprof", State: StateQueued}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := it.podRef(); err != nil || got != want {
		t.Fatalf("journalled item's pod %+v (%v), want %+v", got, err, want)
	}
	if _, err := j.Put(Item{ID: "b", PodDir: "not-a-pod-dir", Rel: "x"}, ""); err != nil {
		t.Fatal(err)
	}
	again, _, err := OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := again.Get("a")
	if got, err := a.podRef(); err != nil || got != want {
		t.Fatalf("item read at start: pod %+v (%v), want %+v", got, err, want)
	}
	b, _ := again.Get("b")
	if _, err := b.podRef(); err == nil {
		t.Fatal("an item whose directory is not a pod's has a pod")
	}
}
