package archiver

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keeplog/keeplog/pkg/policy"
)

// A pod whose policy says zstd gets "<name>.zst": independent frames (here several chunks) that Debian's zstd -d
// restores, with a manifest naming raw and stored size and sha256; an empty file becomes one empty frame. The
// bandwidth counter counts stored bytes.
func TestCompressedUploadRestoresWithZstd(t *testing.T) {
	e := newEnv(t)
	pod := e.pod("ns", "zstd")
	sum := writeCompressible(t, filepath.Join(e.root, pod, "app", "heap.hprof"), 20<<20, 3)
	if err := os.WriteFile(filepath.Join(e.root, pod, "app", "empty.hprof"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := e.config()
	cfg.ChunkSize = 4 << 20
	r := e.start(cfg, Deps{Policy: func(string) policy.ArchivePolicy {
		return policy.ArchivePolicy{Compression: "zstd", CompressionLevel: 6}
	}})
	dst := e.archived(pod, "app/heap.hprof") + zstdSuffix
	empty := e.archived(pod, "app/empty.hprof") + zstdSuffix
	waitFor(t, time.Minute, "both files on the server", func() bool { return exists(dst+manifestSuffix) && exists(empty+manifestSuffix) })
	m := readManifest(t, dst)
	st, _ := os.Stat(dst)
	if m.Compression != "zstd" || m.CompressionLevel != 6 || m.Size != 20<<20 || m.SHA256 != sum ||
		m.StoredSize != st.Size() || m.StoredSHA256 != fileSHA(t, dst) || m.StoredSize >= m.Size {
		t.Fatalf("manifest %+v (server file %d bytes)", m, st.Size())
	}
	if got := zstdSHA(t, dst); got != sum {
		t.Fatalf("zstd -d gives sha256 %s, want %s", got, sum)
	}
	if got, want := zstdSHA(t, empty), fileSHA(t, filepath.Join(e.root, pod, "app", "empty.hprof")); got != want {
		t.Fatalf("empty file: zstd -d gives sha256 %s, want %s", got, want)
	}
	waitFor(t, 10*time.Second, "uploads counted", func() bool {
		return metricValue(t, r.a.m.uploads.WithLabelValues(ResultSuccess)) == 2
	})
	es, _ := os.Stat(empty)
	if b := metricValue(t, r.a.m.bytes); b != float64(st.Size()+es.Size()) {
		t.Fatalf("uploaded_bytes_total %v, want the stored %d", b, st.Size()+es.Size())
	}
}
