package retrieval

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keeplog/keeplog/internal/retrievaltest"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/retrieval/wire"
	"github.com/keeplog/keeplog/pkg/store"
)

// The listing carries each retained directory's expiry as the garbage collector computes it (unpublished at plus
// the StorageClass's retainFor, else --retain-for; none while published) and its archive status file summarized;
// a status file that is a symlink is not followed.
func TestListPodsExpiryAndArchive(t *testing.T) {
	f := newFixture(t, Config{Policy: policy.Defaults{RetainFor: 48 * time.Hour}})
	refC := store.PodRef{Namespace: "ns3", Name: "job-0", UID: "0b7c8f6e-3333-4c3e-9d6a-000000000003"}
	dirA := f.pod("v1:n:pvc-a", refA, true)
	f.pod("v1:n:pvc-b", refB, false)
	dirC := retrievaltest.Record(t, f.st, retrievaltest.Pod{Volume: "v1:n:pvc-c", Node: "node-a", Ref: refC,
		Parameters: map[string]string{api.ParamRetainFor: "24h"}})
	write(t, dirA, api.ArchiveStatusPath, []byte(`{"namespace":"ns1","pod":"api-0","updated":"2026-12-01T10:05:00Z",
		"files":[{"path":"a.hprof","state":"done"},{"path":"b.hprof","state":"done"},{"path":"core","state":"failed"}]}`))
	write(t, dirC, "elsewhere.json", []byte(`{"files":[{"path":"x","state":"done"}]}`))
	if err := os.MkdirAll(filepath.Join(dirC, api.KeeplogDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dirC, "elsewhere.json"), filepath.Join(dirC, api.ArchiveStatusPath)); err != nil {
		t.Fatal(err)
	}
	got := decode[wire.PodList](t, f.get(PathPrefix+"/v1/pods", nil))
	pods := map[string]wire.Pod{}
	for _, p := range got.Pods {
		pods[p.Name] = p
	}
	a, b, c := pods["api-0"], pods["web-0"], pods["job-0"]
	if a.UnpublishedAt == nil || a.ExpiresAt == nil || !a.ExpiresAt.Equal(a.UnpublishedAt.Add(48*time.Hour)) {
		t.Errorf("api-0 unpublished %v expires %v, want 48h (--retain-for) later", a.UnpublishedAt, a.ExpiresAt)
	}
	if c.UnpublishedAt == nil || c.ExpiresAt == nil || !c.ExpiresAt.Equal(c.UnpublishedAt.Add(24*time.Hour)) {
		t.Errorf("job-0 unpublished %v expires %v, want 24h (the StorageClass's retainFor) later", c.UnpublishedAt, c.ExpiresAt)
	}
	if b.ExpiresAt != nil || b.Archive != nil {
		t.Errorf("published web-0 without a status file: expires %v, archive %+v", b.ExpiresAt, b.Archive)
	}
	if a.Archive == nil || a.Archive.Files != 3 || a.Archive.States["done"] != 2 || a.Archive.States["failed"] != 1 ||
		!a.Archive.Updated.Equal(time.Date(2026, 12, 1, 10, 5, 0, 0, time.UTC)) {
		t.Errorf("api-0 archive %+v, want 3 files: 2 done, 1 failed, updated 10:05", a.Archive)
	}
	if c.Archive != nil {
		t.Errorf("job-0's status file is a symlink, followed: %+v", c.Archive)
	}
}
