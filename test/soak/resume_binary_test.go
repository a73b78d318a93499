//go:build soak

package soak

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/keeplog/keeplog/pkg/archiver"
	"github.com/keeplog/keeplog/test/binary"
	"github.com/keeplog/keeplog/test/heapdumps"
)

// chunkSize is the archiver's default chunk (archiver.Config.ChunkSize): the unit of what resume may send twice.
const chunkSize = 8 << 20

// resumePlan is the shape of TestBinaryResume: KEEPLOG_RESUME_SIZE (default 1Gi), KEEPLOG_RESUME_KILLS (10),
// KEEPLOG_RESUME_BANDWIDTH (keeplog's --archive-bandwidth, 64Mi: slow enough that a kill point one or two chunks
// into a run is reached before the run ends), KEEPLOG_RESUME_VARIANTS (raw,zstd; an older keeplog without
// compression runs raw only).
type resumePlan struct {
	size      int64
	kills     int
	bandwidth string
	variants  []string
}

func resumePlanFromEnv(t *testing.T) resumePlan {
	p := resumePlan{size: 1 << 30, kills: 10, bandwidth: "64Mi", variants: []string{"raw", "zstd"}}
	if v := os.Getenv("KEEPLOG_RESUME_SIZE"); v != "" {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			t.Fatalf("KEEPLOG_RESUME_SIZE %q: %v", v, err)
		}
		p.size = q.Value()
	}
	if v, err := strconv.Atoi(os.Getenv("KEEPLOG_RESUME_KILLS")); err == nil && v > 0 {
		p.kills = v
	}
	if v := os.Getenv("KEEPLOG_RESUME_BANDWIDTH"); v != "" {
		p.bandwidth = v
	}
	if v := os.Getenv("KEEPLOG_RESUME_VARIANTS"); v != "" {
		p.variants = strings.Split(v, ",")
	}
	return p
}

// TestBinaryResume is issue 14's resume test through the shipped binary: a real heap dump of about
// KEEPLOG_RESUME_SIZE in a pod directory, its upload interrupted by SIGKILLs of bin/keeplog at random points
// (one to two chunks into each run), keeplog restarted each time; raw and with archiveCompression: zstd. The server
// ends with one final file whose sha256 is the manifest's storedSha256, Debian's zstd -d gives back the dump's
// sha256, and the server received at most the stored size plus one chunk per kill. Then a touch, a rename and a
// hard link of the archived dump each add 0 bytes on the server (TestBinarySameContent's checks, on the same pod).
func TestBinaryResume(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("must run as root (keeplog bind-mounts; sshdtest adds a user)")
	}
	p := resumePlanFromEnv(t)
	ctx := context.Background()
	dump, err := heapdumps.Get(ctx, heapdumps.Spec{Size: p.size, Seed: 1000}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("input: a real JVM heap dump, %s", dump)
	for _, v := range p.variants {
		t.Run(v, func(t *testing.T) { resumeVariant(t, ctx, p, v, dump) })
	}
}

func resumeVariant(t *testing.T, ctx context.Context, p resumePlan, variant string, dump heapdumps.Dump) {
	attrs := map[string]string{}
	if variant == "zstd" {
		attrs["archiveCompression"] = "zstd:3"
	}
	e := newArchEnv(t, ctx, "--archive-quiet-period=2s", "--archive-bandwidth="+p.bandwidth, "--retain-for=1h")
	pod := e.podWithDumps(ctx, "resume-"+variant, attrs, []string{dump.Path})
	// The kill point is counted in stored bytes: one raw chunk is about chunk/ratio of them when compressed.
	step := int64(chunkSize)
	if variant == "zstd" {
		step = chunkSize * dump.Zstd3 / dump.Bytes
	}
	r := &resumeRun{e: e, step: step}
	for i := 0; i < p.kills; i++ {
		r.killOnce(t, ctx, i)
	}
	inv := e.waitArchived(ctx, 1, 10*time.Minute)
	r.finish(t)
	f := inv.Files[0]
	checkResumed(t, e, f, dump, variant)
	limit := f.Size + int64(p.kills)*chunkSize
	t.Logf("%s: %d kills; stored %d bytes (raw %d); the server received %d in total (limit %d, %.1f MiB over the stored size)",
		variant, p.kills, f.Size, dump.Bytes, r.received, limit, float64(r.received-f.Size)/(1<<20))
	if r.received > limit {
		t.Errorf("the server received %d bytes for a %d-byte file over %d kills: more than one chunk (%d) per kill",
			r.received, f.Size, p.kills, chunkSize)
	}
	if variant == p.variants[0] && !t.Failed() {
		sameContent(t, ctx, e, pod, dumpName(0))
	}
}

// checkResumed checks the one archived file against its manifest and the dump.
func checkResumed(t *testing.T, e *archEnv, f binary.ServerFile, dump heapdumps.Dump, variant string) {
	path := filepath.Join(e.sftp.Server.DataDir, f.Rel)
	stored, err := binary.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	m := f.Manifest
	if stored != m.StoredSHA256 || f.Size != m.StoredSize {
		t.Errorf("server file sha256 %s size %d; manifest storedSha256 %s storedSize %d", stored, f.Size, m.StoredSHA256, m.StoredSize)
	}
	if m.SHA256 != dump.SHA256 || m.Size != dump.Bytes {
		t.Errorf("manifest sha256 %s size %d; the dump's %s %d", m.SHA256, m.Size, dump.SHA256, dump.Bytes)
	}
	if variant != "zstd" {
		if stored != dump.SHA256 {
			t.Errorf("raw upload: server file sha256 %s, the dump's %s", stored, dump.SHA256)
		}
		return
	}
	if m.Compression != "zstd" || !strings.HasSuffix(f.Rel, ".zst") {
		t.Errorf("compressed upload: manifest compression %q, remote %s", m.Compression, f.Rel)
	}
	out, err := exec.Command("sh", "-c", `zstd -q -d -c -- "$1" | sha256sum`, "sh", path).Output()
	if err != nil {
		t.Fatalf("zstd -d %s: %v", path, err)
	}
	if got := strings.Fields(string(out))[0]; got != dump.SHA256 {
		t.Errorf("zstd -d | sha256sum of the server file: %s, the dump's %s", got, dump.SHA256)
	}
	t.Logf("zstd: stored %d of %d bytes (ratio %.2f; zstd -3 by hand %.2f)", f.Size, dump.Bytes,
		float64(dump.Bytes)/float64(f.Size), dump.Ratio())
}

// resumeRun follows one upload across keeplog's lives and counts what the server received.
type resumeRun struct {
	e    *archEnv
	step int64
	w    tempWatch
	// received is the bytes the server was sent in the runs so far: each run's size at the kill less where it
	// started writing.
	received int64
}

// killOnce waits until this run has written one to two steps past where it started, SIGKILLs keeplog, counts the
// run's bytes and starts keeplog again.
func (r *resumeRun) killOnce(t *testing.T, ctx context.Context, i int) {
	e := r.e
	at := r.w.start + r.step + rand.Int64N(r.step)
	deadline := time.Now().Add(5 * time.Minute)
	for !r.w.poll(e.sftp.Server.DataDir, at) {
		if time.Now().After(deadline) {
			t.Fatalf("kill %d: the upload did not reach %d bytes; keeplog's log:\n%s", i, at, e.kl.LogTail(30))
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := e.kl.Kill(); err != nil {
		t.Fatal(err)
	}
	if inv, _ := binary.ReadInventory(e.sftp.Server.DataDir); complete(inv) > 0 {
		t.Fatalf("the upload finished after %d kills: make it slower (KEEPLOG_RESUME_BANDWIDTH)", i)
	}
	got := max(r.w.settled(e.sftp.Server.DataDir), 0)
	r.received += got - r.w.start
	acked := journalStored(t, e.kl.Root) // keeplog is dead: its journal is at rest
	t.Logf("kill %d: this run wrote from %d; the server had %d bytes at the kill, the journal %d acknowledged",
		i, r.w.start, got, acked)
	r.w.next(got, acked)
	if err := e.kl.Start(ctx); err != nil {
		t.Fatal(err)
	}
}

// finish counts the last run: the final file's size less where that run started (polled until the rename).
func (r *resumeRun) finish(t *testing.T) {
	inv, err := binary.ReadInventory(r.e.sftp.Server.DataDir)
	if err != nil || len(inv.Files) != 1 || inv.Files[0].Missing {
		t.Fatalf("server inventory %+v (%v), want one archived file", inv, err)
	}
	r.received += inv.Files[0].Size - r.w.start
}

// journalStored is the acknowledged stored prefix the (stopped) keeplog's journal records for its one upload
// under way, 0 when none.
func journalStored(t *testing.T, root string) int64 {
	j, _, err := archiver.OpenJournal(filepath.Join(root, ".keeplog", "archiver"))
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
