package retrievalapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/retrievaltest"
	"github.com/keeplog/keeplog/pkg/retrieval"
	"github.com/keeplog/keeplog/pkg/store"
)

// nodeFixture is a real node endpoint (pkg/retrieval over a real store) behind a token check.
type nodeFixture struct {
	st  *store.Store
	srv *httptest.Server
}

const nodeToken = "keeplog-api-token"

func newNode(t *testing.T) *nodeFixture {
	t.Helper()
	st, err := store.Open(t.TempDir(), clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := retrieval.New(retrieval.Config{}, retrieval.Deps{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+nodeToken {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return &nodeFixture{st: st, srv: srv}
}

// pod records a retained pod directory on node n with files (path → content) and returns its path.
func (n *nodeFixture) pod(t *testing.T, vol string, ref store.PodRef, files map[string]string) string {
	t.Helper()
	return retrievaltest.Record(t, n.st, retrievaltest.Pod{Volume: vol, Node: "n", Ref: ref, Files: files})
}

var (
	refA = store.PodRef{Namespace: "ns1", Name: "api-0", UID: "0b7c8f6e-1111-4c3e-9d6a-000000000001"}
	refB = store.PodRef{Namespace: "ns2", Name: "web-0", UID: "0b7c8f6e-2222-4c3e-9d6a-000000000002"}
)

func newServer(t *testing.T, nodes ...Node) *Server {
	t.Helper()
	s, err := New(Deps{Nodes: staticNodes(nodes), HTTP: &http.Client{}, Token: func() (string, error) { return nodeToken, nil },
		Authorizer: retrievaltest.LogReaders(map[string]string{"alice": "ns1", "bob": "ns2"}), Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type staticNodes []Node

func (s staticNodes) Nodes(context.Context) ([]Node, error) { return s, nil }

// as serves one GET as the user (nil: no user in the context).
func as(s *Server, u user.Info, path string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if u != nil {
		req = req.WithContext(request.WithUser(req.Context(), u))
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

func names(t *testing.T, rec *httptest.ResponseRecorder) []string {
	t.Helper()
	var l RetainedPodList
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &l) != nil {
		t.Fatalf("list: %d %s", rec.Code, rec.Body.String())
	}
	var out []string
	for _, p := range l.Items {
		out = append(out, p.Namespace+"/"+p.Name+"@"+p.Status.Node)
	}
	return out
}

func TestListIsFilteredByPodLogAccess(t *testing.T) {
	n1, n2 := newNode(t), newNode(t)
	n1.pod(t, "v1:n1:pvc-a", refA, map[string]string{"app/gc.log": "gc\n"})
	n2.pod(t, "v1:n2:pvc-b", refB, map[string]string{"app/gc.log": "web\n"})
	s := newServer(t, Node{Name: "node-1", URL: n1.srv.URL}, Node{Name: "node-2", URL: n2.srv.URL})
	alice := &user.DefaultInfo{Name: "alice"}
	admin := &user.DefaultInfo{Name: "admin", Groups: []string{user.SystemPrivilegedGroup}}
	nameA, nameB := "ns1/"+ObjectName(refA.Name, refA.UID)+"@node-1", "ns2/"+ObjectName(refB.Name, refB.UID)+"@node-2"

	if got := names(t, as(s, alice, BasePath+"/"+Resource, nil)); len(got) != 1 || got[0] != nameA {
		t.Errorf("alice -A: %v, want only %s", got, nameA)
	}
	if got := names(t, as(s, admin, BasePath+"/"+Resource, nil)); len(got) != 2 || got[0] != nameA || got[1] != nameB {
		t.Errorf("admin -A: %v", got)
	}
	if got := names(t, as(s, alice, BasePath+"/namespaces/ns1/"+Resource, nil)); len(got) != 1 {
		t.Errorf("alice -n ns1: %v", got)
	}
	if rec := as(s, alice, BasePath+"/namespaces/ns2/"+Resource, nil); rec.Code != http.StatusForbidden ||
		bytes.Contains(rec.Body.Bytes(), []byte("web-0")) {
		t.Errorf("alice -n ns2: %d %s", rec.Code, rec.Body.String())
	}
	if got := names(t, as(s, &user.DefaultInfo{Name: "carol"}, BasePath+"/"+Resource, nil)); len(got) != 0 {
		t.Errorf("carol -A: %v", got)
	}
	for _, u := range []user.Info{nil, &user.DefaultInfo{Name: user.Anonymous, Groups: []string{user.AllUnauthenticated}}} {
		if rec := as(s, u, BasePath+"/"+Resource, nil); rec.Code != http.StatusUnauthorized {
			t.Errorf("%v: %d", u, rec.Code)
		}
	}
}

func TestFilesAndFileThroughTheNode(t *testing.T) {
	n1 := newNode(t)
	data := bytes.Repeat([]byte("0123456789"), 50000)
	dir := n1.pod(t, "v1:n1:pvc-a", refA, map[string]string{"app/gc.log": "gc\n", "app/heap.hprof": string(data)})
	if err := os.Symlink("/etc/shadow", filepath.Join(dir, "app", "shadow")); err != nil {
		t.Fatal(err)
	}
	down := Node{Name: "node-down", URL: "http://127.0.0.1:1"}
	s := newServer(t, Node{Name: "node-1", URL: n1.srv.URL}, down)
	alice, bob := &user.DefaultInfo{Name: "alice"}, &user.DefaultInfo{Name: "bob"}
	obj := BasePath + "/namespaces/ns1/" + Resource + "/" + ObjectName(refA.Name, refA.UID)
	file := func(rel string) string { return obj + "/file?path=" + url.QueryEscape(rel) }

	var l RetainedPodList
	if rec := as(s, alice, BasePath+"/"+Resource, nil); json.Unmarshal(rec.Body.Bytes(), &l) != nil ||
		len(l.Unreachable) != 1 || l.Unreachable[0] != "node-down" || len(l.Items) != 1 {
		t.Errorf("list with a node down: %s", rec.Body.String())
	}
	var files RetainedPodFiles
	if rec := as(s, alice, obj+"/files", nil); rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &files) != nil ||
		len(files.Files) != 2 || files.Skipped["app/shadow"] != "symlink" {
		t.Errorf("files: %d %s", rec.Code, rec.Body.String())
	}
	if rec := as(s, alice, file("app/heap.hprof"), nil); rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), data) {
		t.Errorf("file: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	rec := as(s, alice, file("app/heap.hprof"), map[string]string{"Range": "bytes=1000-"})
	if rec.Code != http.StatusPartialContent || !bytes.Equal(rec.Body.Bytes(), data[1000:]) || rec.Header().Get("ETag") == "" {
		t.Errorf("range: %d, %d bytes, ETag %q", rec.Code, rec.Body.Len(), rec.Header().Get("ETag"))
	}
	for rel, want := range map[string]int{"app/shadow": http.StatusForbidden, "../x": http.StatusBadRequest, "app/none": http.StatusNotFound} {
		if rec := as(s, alice, file(rel), nil); rec.Code != want {
			t.Errorf("%s: %d %s, want %d", rel, rec.Code, rec.Body.String(), want)
		}
	}
	for _, p := range []string{obj, obj + "/files", file("app/gc.log")} {
		if rec := as(s, bob, p, nil); rec.Code != http.StatusForbidden || bytes.Contains(rec.Body.Bytes(), []byte("gc\n")) {
			t.Errorf("bob %s: %d %s", p, rec.Code, rec.Body.String())
		}
	}
	if rec := as(s, alice, BasePath+"/namespaces/ns1/"+Resource+"/api-0.nope", nil); rec.Code != http.StatusNotFound {
		t.Errorf("unknown uid: %d", rec.Code)
	}
}

func TestNodeTokenRequired(t *testing.T) {
	n1 := newNode(t)
	n1.pod(t, "v1:n1:pvc-a", refA, nil)
	s, err := New(Deps{Nodes: staticNodes{{Name: "node-1", URL: n1.srv.URL}}, HTTP: &http.Client{},
		Token: func() (string, error) { return "", errors.New("no token file") }, Authorizer: retrievaltest.LogReaders(nil), Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	var l RetainedPodList
	rec := as(s, &user.DefaultInfo{Name: "admin", Groups: []string{user.SystemPrivilegedGroup}}, BasePath+"/"+Resource, nil)
	if json.Unmarshal(rec.Body.Bytes(), &l) != nil || len(l.Items) != 0 || len(l.Unreachable) != 1 {
		t.Errorf("without a token: %s", rec.Body.String())
	}
}
