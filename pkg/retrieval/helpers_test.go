package retrieval

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keeplog/keeplog/internal/retrievaltest"
	"github.com/keeplog/keeplog/pkg/store"
)

// fixture is a real store under a temporary root and the handler over it.
type fixture struct {
	t    *testing.T
	st   *store.Store
	h    *Handler
	root string
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	root := t.TempDir()
	st, err := store.Open(root, clocktesting.NewFakePassiveClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(cfg, Deps{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, st: st, h: h, root: root}
}

// pod records a volume owning one pod directory on node-a, published and, with unpublished, unpublished again; it
// returns the directory's path.
func (f *fixture) pod(vol string, ref store.PodRef, unpublished bool) string {
	f.t.Helper()
	return retrievaltest.Record(f.t, f.st, retrievaltest.Pod{Volume: vol, Node: "node-a", Ref: ref, Running: !unpublished})
}

// write makes the file rel below dir with data (and its parent directories).
func write(t *testing.T, dir, rel string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// get serves one GET through the handler, with extra headers.
func (f *fixture) get(path string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

func fileURL(dir, rel string) string {
	return PathPrefix + "/v1/pods/" + url.PathEscape(dir) + "/file?path=" + url.QueryEscape(rel)
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %q: %v", rec.Body.String(), err)
	}
	return v
}
