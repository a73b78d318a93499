package store

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	clocktesting "k8s.io/utils/clock/testing"

	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/pkg/api"
)

func openStore(t *testing.T) (*Store, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	s, err := Open(root, clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

func TestOpenRefusesBadRoots(t *testing.T) {
	base := t.TempDir()
	if err := os.Symlink(base, filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{"", "/", "relative/root", base + "/a/../b", filepath.Join(base, "link"), filepath.Join(base, "file")} {
		if _, err := Open(root, clock.RealClock{}); err == nil {
			t.Errorf("Open(%q) accepted a bad root", root)
		}
	}
}

func TestPodRefValidation(t *testing.T) {
	uid := "0f8c6a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f"
	good := PodRef{Namespace: "team-a", Name: "web-7d9f.x", UID: uid}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, err := ParsePodDirName(good.DirName()); err != nil || got != good {
		t.Fatalf("round trip %v %v", got, err)
	}
	for _, bad := range []PodRef{
		{Namespace: "..", Name: "p", UID: uid},
		{Namespace: "a/b", Name: "p", UID: uid},
		{Namespace: "Team", Name: "p", UID: uid},
		{Namespace: "ns", Name: "a_b", UID: uid},
		{Namespace: "ns", Name: "p\x00", UID: uid},
		{Namespace: "ns", Name: strings.Repeat("a", 254), UID: uid},
		{Namespace: strings.Repeat("a", 64), Name: "p", UID: uid},
		{Namespace: "ns", Name: "p", UID: "../../etc"},
		{Namespace: "ns", Name: "p", UID: ""},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
	for _, dir := range []string{".keeplog", "_volume_v1_n_x", "a_b", "ns_p_notauid", "ns_p_" + uid + "_x"} {
		if _, err := ParsePodDirName(dir); err == nil {
			t.Errorf("ParsePodDirName(%q) accepted it", dir)
		}
	}
}

func TestClaimPodDirOwnership(t *testing.T) {
	s, root := openStore(t)
	for _, id := range []string{"v1:n:a", "v1:n:b"} {
		if _, err := s.CreateVolume(&Volume{ID: id, Kind: Persistent}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateVolume(&Volume{ID: "v1:n:a"}); !errors.Is(err, ErrExists) {
		t.Fatalf("second CreateVolume: %v", err)
	}
	ref := &PodRef{Namespace: "ns", Name: "p", UID: "0f8c6a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f"}
	path, err := s.ClaimPodDir("v1:n:a", ref.DirName(), ref)
	if err != nil || path != filepath.Join(root, ref.DirName()) {
		t.Fatalf("claim: %s %v", path, err)
	}
	if _, err := s.ClaimPodDir("v1:n:a", ref.DirName(), ref); err != nil {
		t.Fatalf("claim again by the owner: %v", err)
	}
	if _, err := s.ClaimPodDir("v1:n:b", ref.DirName(), ref); !errors.Is(err, ErrConflict) {
		t.Fatalf("claim by another volume: %v", err)
	}
	for _, bad := range []string{"..", ".keeplog", "a/b", ""} {
		if _, err := s.ClaimPodDir("v1:n:a", bad, nil); err == nil {
			t.Errorf("claimed %q", bad)
		}
	}
	if _, err := s.ClaimPodDir("../x", "d", nil); err == nil {
		t.Error("claimed for a volume ID with a path in it")
	}
}

func TestDeleteVolumeNeverFollowsSymlinks(t *testing.T) {
	s, root := openStore(t)
	outside := t.TempDir()
	precious := filepath.Join(outside, "precious")
	if err := os.WriteFile(precious, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateVolume(&Volume{ID: "v1:n:a"}); err != nil {
		t.Fatal(err)
	}
	ref := &PodRef{Namespace: "ns", Name: "p", UID: "0f8c6a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f"}
	dir, err := s.ClaimPodDir("v1:n:a", ref.DirName(), ref)
	if err != nil {
		t.Fatal(err)
	}
	// What a hostile pod can plant in its own directory.
	for name, target := range map[string]string{"victim": "/", "x": outside, "deep/link": outside, "file-link": precious} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddTarget("v1:n:a", Target{Path: "/mnt/t", PodDir: ref.DirName()}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVolume("v1:n:a"); !errors.Is(err, ErrInUse) {
		t.Fatalf("deleted a published volume: %v", err)
	}
	if err := s.RemoveTarget("v1:n:a", "/mnt/t"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVolume("v1:n:a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("pod directory still there: %v", err)
	}
	if data, err := os.ReadFile(precious); err != nil || string(data) != "keep" {
		t.Fatalf("a file outside the root was touched: %q %v", data, err)
	}
	if _, err := os.Stat(root); err != nil {
		t.Fatalf("root gone: %v", err)
	}
	if _, err := s.GetVolume("v1:n:a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("records left: %v", err)
	}
	if err := s.DeleteVolume("v1:n:a"); err != nil {
		t.Errorf("second delete: %v", err)
	}
}

func TestUnpublishStartsTheRetentionClock(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	root := filepath.Join(t.TempDir(), "root")
	clk := clocktesting.NewFakePassiveClock(now)
	s, err := Open(root, clk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateVolume(&Volume{ID: "v1:n:a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimPodDir("v1:n:a", "d", nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/t1", "/t2"} {
		if err := s.AddTarget("v1:n:a", Target{Path: p, PodDir: "d"}); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Hour)
	clk.SetTime(now)
	if err := s.RemoveTarget("v1:n:a", "/t1"); err != nil {
		t.Fatal(err)
	}
	dirs, _ := s.PodDirs("v1:n:a")
	if !dirs[0].UnpublishedAt.IsZero() {
		t.Fatalf("unpublished while still mounted at /t2: %+v", dirs[0])
	}
	now = now.Add(time.Hour)
	clk.SetTime(now)
	if err := s.RemoveTarget("v1:n:a", "/t2"); err != nil {
		t.Fatal(err)
	}
	dirs, _ = s.PodDirs("v1:n:a")
	if !dirs[0].UnpublishedAt.Equal(now) {
		t.Fatalf("unpublished at %v, want %v", dirs[0].UnpublishedAt, now)
	}
}

func TestVolumeUsageDoesNotFollowLinks(t *testing.T) {
	s, _ := openStore(t)
	if _, err := s.CreateVolume(&Volume{ID: "v1:n:a"}); err != nil {
		t.Fatal(err)
	}
	dir, err := s.ClaimPodDir("v1:n:a", "d", nil)
	if err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(big), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "own"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	u, err := s.VolumeUsage("v1:n:a")
	if err != nil {
		t.Fatal(err)
	}
	if u.Bytes < 1<<20 || u.Bytes >= 2<<20 || u.Inodes != 3 {
		t.Fatalf("usage %+v, want about 1 MiB in 3 inodes", u)
	}
}

// The owner index follows every way a pod directory's record comes and goes: a claim, the GC's DeletePodDir,
// DeleteVolume, a record removed by hand, and a restart (a new Store reads the records).
func TestOwnerIndexFollowsTheRecords(t *testing.T) {
	s, root := openStore(t)
	for _, id := range []string{"v1:n:a", "v1:n:b", "v1:n:c"} {
		if _, err := s.CreateVolume(&Volume{ID: id, Kind: Persistent}); err != nil {
			t.Fatal(err)
		}
	}
	ref := func(name string) *PodRef {
		return &PodRef{Namespace: "ns", Name: name, UID: "0f8c6a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f"}
	}
	claim := func(vol, name string) error {
		_, err := s.ClaimPodDir(vol, ref(name).DirName(), ref(name))
		return err
	}
	owner := func(st *Store, name string) string {
		t.Helper()
		v, _, err := st.Owner(ref(name).DirName())
		// PodDirRecord (the archiver's question: unpublished?) agrees with Owner at every step.
		if p, perr := st.PodDirRecord(ref(name).DirName()); errors.Is(err, ErrNotFound) != errors.Is(perr, ErrNotFound) ||
			(perr == nil && p.Dir != ref(name).DirName()) {
			t.Fatalf("%s: Owner says %v, PodDirRecord %+v, %v", name, err, p, perr)
		}
		if errors.Is(err, ErrNotFound) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		return v.ID
	}
	for vol, name := range map[string]string{"v1:n:a": "p1", "v1:n:b": "p2", "v1:n:c": "p3"} {
		if err := claim(vol, name); err != nil {
			t.Fatal(err)
		}
	}
	// A restarted plugin (a new Store on the same root) knows every owner from the records.
	again, err := Open(root, clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"p1": "v1:n:a", "p2": "v1:n:b", "p3": "v1:n:c", "p4": ""} {
		if got := owner(again, name); got != want {
			t.Errorf("after a restart %s is owned by %q, want %q", name, got, want)
		}
	}
	if err := claim("v1:n:b", "p1"); !errors.Is(err, ErrConflict) {
		t.Fatalf("p1 claimed by a second volume: %v", err)
	}
	// The GC deletes p1: another volume may claim the name now.
	_, p, err := s.Owner(ref("p1").DirName())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeletePodDir(p.Dir, DeleteCheck{Volume: "v1:n:a", LastPublished: p.LastPublished}); err != nil {
		t.Fatal(err)
	}
	if got := owner(s, "p1"); got != "" {
		t.Fatalf("p1 still owned by %s after DeletePodDir", got)
	}
	if err := claim("v1:n:b", "p1"); err != nil {
		t.Fatalf("claim of a deleted directory: %v", err)
	}
	// DeleteVolume forgets its directories.
	if err := s.DeleteVolume("v1:n:b"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"p1", "p2"} {
		if got := owner(s, name); got != "" {
			t.Fatalf("%s still owned by %s after DeleteVolume", name, got)
		}
	}
	if err := claim("v1:n:c", "p2"); err != nil {
		t.Fatalf("claim after DeleteVolume: %v", err)
	}
	// A record removed by hand is not believed.
	if err := os.Remove(filepath.Join(root, api.KeeplogDir, "volumes", "v1:n:c", "pods", ref("p3").DirName()+".json")); err != nil {
		t.Fatal(err)
	}
	if got := owner(s, "p3"); got != "" {
		t.Fatalf("p3 owned by %s after its record was removed", got)
	}
	if err := claim("v1:n:a", "p3"); err != nil {
		t.Fatalf("claim after the record was removed by hand: %v", err)
	}
}

// TestPodDirsShareThePodRefWithTheName: a pod's own directory's reference points into the directory's name (the
// usage tracker, the garbage collector and the archiver keep a PodDir of each of thousands of retained directories;
// the three strings were kept twice), and it is still the pod's reference.
func TestPodDirsShareThePodRefWithTheName(t *testing.T) {
	s, _ := openStore(t)
	if _, err := s.CreateVolume(&Volume{ID: "v1:n:a", Kind: Persistent}); err != nil {
		t.Fatal(err)
	}
	ref := &PodRef{Namespace: "ns", Name: "p", UID: "0f8c6a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f"}
	if _, err := s.ClaimPodDir("v1:n:a", ref.DirName(), ref); err != nil {
		t.Fatal(err)
	}
	dirs, err := s.PodDirs("v1:n:a")
	if err != nil || len(dirs) != 1 || dirs[0].Pod == nil {
		t.Fatalf("PodDirs: %+v, %v", dirs, err)
	}
	d := dirs[0]
	if *d.Pod != *ref {
		t.Fatalf("pod %+v, want %+v", *d.Pod, *ref)
	}
	inName := func(f string) bool {
		start := uintptr(unsafe.Pointer(unsafe.StringData(d.Dir)))
		p := uintptr(unsafe.Pointer(unsafe.StringData(f)))
		return p >= start && p+uintptr(len(f)) <= start+uintptr(len(d.Dir))
	}
	for _, f := range []string{d.Pod.Namespace, d.Pod.Name, d.Pod.UID} {
		if !inName(f) {
			t.Errorf("%q is a copy, not part of the directory name %q", f, d.Dir)
		}
	}
}

// TestReconcileReadsOnlyPublications: Reconcile drops the publication whose target is not mounted, returns the kept
// one with its volume, and reads no main record of a volume it has no publication of (20,000 retained volumes were
// each read at every start): a retained volume whose record this binary cannot read does not stop it.
func TestReconcileReadsOnlyPublications(t *testing.T) {
	s, _ := openStore(t)
	for _, id := range []string{"v1:n:a", "v1:n:retained"} {
		if _, err := s.CreateVolume(&Volume{ID: id, Kind: Persistent}); err != nil {
			t.Fatal(err)
		}
	}
	ref := &PodRef{Namespace: "ns", Name: "p", UID: "0f8c6a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f"}
	if _, err := s.ClaimPodDir("v1:n:a", ref.DirName(), ref); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/mnt/live", "/mnt/gone"} {
		if err := s.AddTarget("v1:n:a", Target{Path: path, PodDir: ref.DirName()}); err != nil {
			t.Fatal(err)
		}
	}
	vdir, err := s.volumeDir("v1:n:retained")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vdir, api.VolumeRecordFile), []byte("{\n  \"format\": 99\n}"), 0o600); err != nil {
		t.Fatal(err)
	}
	dropped, kept, err := s.Reconcile(func(path string) (bool, error) { return path == "/mnt/live", nil })
	if err != nil {
		t.Fatalf("Reconcile read the record of a volume without publications: %v", err)
	}
	if !slices.Equal(dropped, []string{"/mnt/gone"}) || len(kept) != 1 || kept[0].VolumeID != "v1:n:a" || kept[0].Target.Path != "/mnt/live" {
		t.Fatalf("dropped %v, kept %+v; want /mnt/gone dropped and v1:n:a's /mnt/live kept", dropped, kept)
	}
}
