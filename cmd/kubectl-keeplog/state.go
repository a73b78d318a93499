package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/keeplog/keeplog/pkg/retrieval/wire"
	"github.com/keeplog/keeplog/pkg/retrievalapi"
)

// archiveStatusFile is the archiver's status file in the pod directory (docs/archiving.md).
const archiveStatusFile = metaDir + "archive-status.json"

// archiveColumn summarizes the archive state: "<none>" without a status file (archiving off, nothing matched),
// else "<finished>/<files> done" (skipped files count as finished) and what is not: failed, pending (queued,
// uploading, settling), rejected.
func archiveColumn(a *wire.ArchiveState) string {
	if a == nil || a.Files == 0 {
		return "<none>"
	}
	s := fmt.Sprintf("%d/%d done", a.States["done"]+a.States["skipped"], a.Files)
	for _, part := range []struct {
		label string
		n     int
	}{
		{"failed", a.States["failed"]},
		{"pending", a.States["queued"] + a.States["uploading"] + a.States["settling"]},
		{"rejected", a.States["rejected"]},
	} {
		if part.n > 0 {
			s += fmt.Sprintf(", %d %s", part.n, part.label)
		}
	}
	return s
}

// expiresColumn is when the retention ends: "<none>" while the pod runs, "in 2d" ahead, "expired" after (the
// garbage collector deletes the directory once it is archived).
func expiresColumn(p retrievalapi.RetainedPodStatus, now time.Time) string {
	if p.ExpiresAt == nil {
		return "<none>"
	}
	if left := p.ExpiresAt.Sub(now); left > 0 {
		return "in " + duration.HumanDuration(left)
	}
	return "expired"
}

// podSize is the sum of the pod directory's regular files.
func podSize(ctx context.Context, c *client, p *retrievalapi.RetainedPod) (int64, error) {
	fl, err := c.files(ctx, p)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, f := range fl.Files {
		n += f.Size
	}
	return n, nil
}

// humanSize is n bytes in binary units, as kubectl shows quantities (1.5Mi).
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", v), "0"), ".") + []string{"Ki", "Mi", "Gi", "Ti"}[i]
}

// archivedFile is one line of the status file, as describe shows it.
type archivedFile struct {
	Path   string `json:"path"`
	State  string `json:"state"`
	Remote string `json:"remote"`
	SameAs string `json:"sameAs"`
	Error  string `json:"error"`
}

// archivedFiles reads the status file; nil without one.
func archivedFiles(ctx context.Context, c *client, p *retrievalapi.RetainedPod) ([]archivedFile, error) {
	text, err := c.readSmall(ctx, p, archiveStatusFile)
	if err != nil || text == "" {
		return nil, err
	}
	var st struct {
		Files []archivedFile `json:"files"`
	}
	if err := json.Unmarshal([]byte(text), &st); err != nil {
		return nil, fmt.Errorf("%s: %w", archiveStatusFile, err)
	}
	return st.Files, nil
}
