//go:build soak

package soak

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/archiver"
	"github.com/keeplog/keeplog/test/binary"
)

// sameContent touches, renames (within the container directory) and hard-links the archived dump rel of pod, one
// after the other, and checks that each is recorded done with sameAs in the status file while the server gets 0
// bytes: no upload temporary appears (inotify on the pod's remote directory), the data it holds is unchanged, and
// keeplog's uploaded-bytes counter does not move.
func sameContent(t *testing.T, ctx context.Context, e *archEnv, pod binary.Pod, rel string) {
	before, err := binary.ReadInventory(e.sftp.Server.DataDir)
	if err != nil || len(before.Files) != 1 {
		t.Fatalf("inventory %+v (%v)", before, err)
	}
	tw, err := binary.WatchTemps([]string{filepath.Dir(filepath.Join(e.sftp.Server.DataDir, before.Files[0].Rel))})
	if err != nil {
		t.Fatal(err)
	}
	m0 := scrape(t, ctx, e)
	dir := e.kl.PodDir(pod)
	renamed, linked := filepath.Join(filepath.Dir(rel), "renamed.hprof"), filepath.Join(filepath.Dir(rel), "linked.hprof")
	steps := []struct {
		name, rel string
		do        func() error
	}{
		{"touch", rel, func() error {
			now := time.Now()
			return os.Chtimes(filepath.Join(dir, rel), now, now)
		}},
		{"rename", renamed, func() error { return os.Rename(filepath.Join(dir, rel), filepath.Join(dir, renamed)) }},
		{"hard link", linked, func() error { return os.Link(filepath.Join(dir, renamed), filepath.Join(dir, linked)) }},
	}
	for _, s := range steps {
		start := time.Now()
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		st := waitSameAs(t, e, dir, s.rel, start)
		t.Logf("%s: %s done after %s, sameAs %s", s.name, s.rel, time.Since(start).Round(100*time.Millisecond), st.SameAs)
	}
	rep := tw.Stop()
	after, err := binary.ReadInventory(e.sftp.Server.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	m1 := scrape(t, ctx, e)
	sent := m1["uploaded"] - m0["uploaded"]
	t.Logf("touch, rename, hard link: %d upload temporaries on the server, %d→%d archived files, %d→%d bytes, "+
		"uploaded-bytes counter +%.0f, same_content uploads +%.0f", rep.Seen, len(before.Files), len(after.Files),
		dataBytes(before), dataBytes(after), sent, m1["same"]-m0["same"])
	if rep.Seen != 0 || rep.Lost || len(after.Files) != 1 || dataBytes(after) != dataBytes(before) || sent != 0 {
		t.Errorf("a touched, renamed or hard-linked archived dump added bytes on the server; timeline %v", rep.Timeline)
	}
	if m1["same"]-m0["same"] != float64(len(steps)) {
		t.Errorf("keeplog_archiver_uploads_total{result=\"same_content\"} +%.0f, want +%d", m1["same"]-m0["same"], len(steps))
	}
}

// waitSameAs waits until the pod's status file lists rel as done with sameAs, updated after since.
func waitSameAs(t *testing.T, e *archEnv, dir, rel string, since time.Time) archiver.FileStatus {
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		var ps archiver.PodStatus
		if b, err := os.ReadFile(filepath.Join(dir, ".keeplog", api.ArchiveStatusFile)); err == nil && json.Unmarshal(b, &ps) == nil {
			for _, f := range ps.Files {
				if f.Path == rel && f.State == string(archiver.StateDone) && f.SameAs != "" && !f.Updated.Before(since.Add(-time.Second)) {
					return f
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(dir, ".keeplog", api.ArchiveStatusFile))
	t.Fatalf("%s not done with sameAs within 3m; status file:\n%s\nkeeplog's log:\n%s", rel, b, e.kl.LogTail(20))
	return archiver.FileStatus{}
}

// scrape reads the two counters sameContent compares.
func scrape(t *testing.T, ctx context.Context, e *archEnv) map[string]float64 {
	s, err := binary.Scrape(ctx, e.kl.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	up, _ := s.Sum("keeplog_archiver_uploaded_bytes_total")
	return map[string]float64{"uploaded": up, "same": s.Series("keeplog_archiver_uploads_total")[`{result="same_content"}`]}
}

// dataBytes adds the sizes of the archived data files (manifests not counted).
func dataBytes(inv binary.Inventory) int64 {
	var n int64
	for _, f := range inv.Files {
		n += f.Size
	}
	return n
}
