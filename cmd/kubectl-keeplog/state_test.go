package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/keeplog/keeplog/pkg/retrieval/wire"
	"github.com/keeplog/keeplog/pkg/retrievalapi"
)

// ls shows the archive state and the expiry for every pod, the size with -o wide; -o json and yaml carry both as
// the API's fields.
func TestLsArchiveAndExpiry(t *testing.T) {
	c, _, files := fixture(t)
	alice := c.kubeconfig("alice", "ns1")
	out, errs, code := kk(t, alice, "ls")
	lines := strings.Split(out, "\n")
	if code != 0 || !strings.Contains(lines[0], "ARCHIVE") || !strings.Contains(lines[0], "EXPIRES") {
		t.Fatalf("ls: exit %d\n%s%s", code, out, errs)
	}
	row := func(out, name string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, name+" ") {
				return l
			}
		}
		t.Fatalf("no row %s in\n%s", name, out)
		return ""
	}
	a, w := row(out, refA.Name), row(out, refA2.Name)
	if !strings.Contains(a, "2/4 done, 1 failed, 1 pending") || !strings.Contains(w, "<none>") {
		t.Errorf("ARCHIVE: %q, %q; want 2/4 done, 1 failed, 1 pending and <none>", a, w)
	}
	if !strings.Contains(a, "in 6d23h") && !strings.Contains(a, "in 7d") {
		t.Errorf("EXPIRES of a pod retained now for the default week: %q", a)
	}
	var total int64
	for _, f := range files {
		total += int64(len(f))
	}
	out, _, code = kk(t, alice, "ls", "-o", "wide")
	if wide := row(out, refA.Name); code != 0 || !strings.Contains(out, "SIZE") || !strings.Contains(wide, " "+humanSize(total)+" ") {
		t.Errorf("ls -o wide: exit %d, want SIZE %s\n%s", code, humanSize(total), out)
	}
	for _, format := range []string{"json", "yaml"} {
		out, _, code = kk(t, alice, "ls", "-o", format)
		var l retrievalapi.RetainedPodList
		var err error
		if format == "json" {
			err = json.Unmarshal([]byte(out), &l)
		} else {
			err = yaml.Unmarshal([]byte(out), &l)
		}
		if code != 0 || err != nil || len(l.Items) != 2 {
			t.Fatalf("ls -o %s: exit %d %v\n%s", format, code, err, out)
		}
		s := l.Items[0].Status
		if s.PodName != refA.Name || s.Archive == nil || s.Archive.Files != 4 || s.Archive.States["failed"] != 1 ||
			s.ExpiresAt == nil || s.UnpublishedAt == nil || s.ExpiresAt.Sub(s.UnpublishedAt.Time) != 7*24*time.Hour {
			t.Errorf("ls -o %s: status %+v, want the archive counts and expiry a week after the end", format, s)
		}
	}
}

// describe shows the expiry, the archive summary and each archived file's state and where its copy is.
func TestDescribeArchiveAndExpiry(t *testing.T) {
	c, _, _ := fixture(t)
	out, errs, code := kk(t, c.kubeconfig("alice", "ns1"), "describe", refA.Name)
	for _, want := range []string{"Expires:", "Archive:", "2/4 done, 1 failed, 1 pending", "Archived copies",
		"sftp://archive/ns1/api-7d9f-x2k4/app/dumps/heap.hprof", "same content as app/dumps/heap.hprof",
		"failed", "connection refused", "settling"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe: no %q (exit %d)\n%s%s", want, code, out, errs)
		}
	}
	out, _, code = kk(t, c.kubeconfig("alice", "ns1"), "describe", refA2.Name)
	if code != 0 || strings.Contains(out, "Archived copies") || !regexp.MustCompile(`(?m)^Archive:\s+<none>$`).MatchString(out) {
		t.Errorf("describe of a pod without archive status: exit %d\n%s", code, out)
	}
}

func TestColumns(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(d)); return &t }
	for _, tc := range []struct {
		exp  *metav1.Time
		want string
	}{{nil, "<none>"}, {at(50 * time.Hour), "in 2d2h"}, {at(-time.Minute), "expired"}, {at(0), "expired"}} {
		if got := expiresColumn(retrievalapi.RetainedPodStatus{ExpiresAt: tc.exp}, now); got != tc.want {
			t.Errorf("expires %v: %q, want %q", tc.exp, got, tc.want)
		}
	}
	for _, tc := range []struct {
		a    *wire.ArchiveState
		want string
	}{
		{nil, "<none>"},
		{&wire.ArchiveState{}, "<none>"},
		{&wire.ArchiveState{Files: 3, States: map[string]int{"done": 2, "skipped": 1}}, "3/3 done"},
		{&wire.ArchiveState{Files: 3, States: map[string]int{"queued": 1, "uploading": 1, "rejected": 1}}, "0/3 done, 2 pending, 1 rejected"},
	} {
		if got := archiveColumn(tc.a); got != tc.want {
			t.Errorf("archive %+v: %q, want %q", tc.a, got, tc.want)
		}
	}
	for n, want := range map[int64]string{0: "0", 1023: "1023", 1024: "1Ki", 1536: "1.5Ki", 3 << 20: "3Mi", 5 << 30: "5Gi"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}
