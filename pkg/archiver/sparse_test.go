package archiver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/policy"
)

// makeSparse makes a file of the given apparent size with a few KiB of data and returns its sha256 (computed by
// streaming it once).
func makeSparse(t *testing.T, p string, size int64) string {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, size / 3, size - 4096} {
		if _, err := f.WriteAt([]byte(strings.Repeat("JAVA PROFILE 1.0.2 ", 200)), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return fileSHA(t, p)
}

// A sparse file (8 GiB apparent, 2 GiB with -short, a few KiB of data; the 64 GiB would take minutes of
// hashing here for the same proof) is never uploaded raw by default: it is archived compressed, a tiny remote
// file that zstd -d restores to the right sha256, with an ArchiveSparse Event. (Before, it was sent raw, holding
// the cluster slot for the time its holes take on the wire.)
func TestSparseFileIsCompressedByDefault(t *testing.T) {
	size := int64(8 << 30)
	if testing.Short() {
		size = 2 << 30
	}
	e := newEnv(t)
	pod := e.pod("ns", "sparse")
	sum := makeSparse(t, filepath.Join(e.root, pod, "app", "core.1"), size)
	r := e.start(e.config(), Deps{})
	dst := e.archived(pod, "app/core.1") + zstdSuffix
	waitFor(t, 5*time.Minute, "the sparse file archived", func() bool { return exists(dst) && exists(dst+manifestSuffix) }) // the manifest is renamed into place first
	st, _ := os.Stat(dst)
	if st.Size() > 1<<20 {
		t.Fatalf("the remote file has %d bytes for a few KiB of data", st.Size())
	}
	if got := zstdSHA(t, dst); got != sum {
		t.Fatalf("zstd -d gives sha256 %s, want %s", got, sum)
	}
	if m := readManifest(t, dst); m.Size != size || m.SHA256 != sum || m.Compression != "zstd" {
		t.Fatalf("manifest %+v", m)
	}
	if n := r.rec.count(api.ReasonArchiveSparse); n != 1 {
		t.Fatalf("%d ArchiveSparse Events, want 1: %v", n, r.rec.all())
	}
	if b := metricValue(t, r.a.m.bytes); b > 1<<20 {
		t.Fatalf("%v bytes sent", b)
	}
}

// archiveSparse: skip journals the file skipped, with the reason in the status file and an Event; the pod
// directory counts as archived (the GC is not blocked). archiveSparse: upload sends it raw.
func TestSparseFileSkippedOrUploadedByPolicy(t *testing.T) {
	e := newEnv(t)
	skip, raw := e.pod("ns", "skip"), e.pod("ns", "raw")
	makeSparse(t, filepath.Join(e.root, skip, "app", "core.2"), 256<<20)
	rawSum := makeSparse(t, filepath.Join(e.root, raw, "app", "core.3"), 96<<20)
	r := e.start(e.config(), Deps{Policy: func(pod string) policy.ArchivePolicy {
		if pod == skip {
			return policy.ArchivePolicy{Sparse: policy.SparseSkip}
		}
		return policy.ArchivePolicy{Sparse: policy.SparseUpload}
	}})
	waitFor(t, time.Minute, "the skipped file in the status", func() bool {
		fs := statusOf(readStatus(t, e.root, skip), "app/core.2")
		return len(fs) == 1 && fs[0].State == string(StateSkipped) && strings.Contains(fs[0].Error, "sparse")
	})
	if ok, why := r.a.Archived(skip); !ok {
		t.Fatalf("a pod directory with a skipped sparse file is not archived: %s", why)
	}
	dst := e.archived(raw, "app/core.3")
	waitFor(t, time.Minute, "the raw sparse upload", func() bool { return exists(dst) && exists(dst+manifestSuffix) }) // the manifest is renamed into place first
	if got := fileSHA(t, dst); got != rawSum {
		t.Fatalf("raw upload sha256 %s, want %s", got, rawSum)
	}
	if exists(e.archived(skip, "app/core.2")) || exists(e.archived(skip, "app/core.2")+zstdSuffix) {
		t.Fatal("the skipped sparse file was uploaded")
	}
	if n := r.rec.count(api.ReasonArchiveSparse); n != 2 {
		t.Fatalf("%d ArchiveSparse Events, want 2: %v", n, r.rec.all())
	}
}
