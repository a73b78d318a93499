package retrieval

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/fstest"
	"github.com/keeplog/keeplog/pkg/retrieval/wire"
	"github.com/keeplog/keeplog/pkg/store"
)

var (
	refA = store.PodRef{Namespace: "ns1", Name: "api-0", UID: "0b7c8f6e-1111-4c3e-9d6a-000000000001"}
	refB = store.PodRef{Namespace: "ns2", Name: "web-0", UID: "0b7c8f6e-2222-4c3e-9d6a-000000000002"}
)

func TestListPods(t *testing.T) {
	f := newFixture(t, Config{})
	f.pod("v1:n:pvc-a", refA, true)
	f.pod("v1:n:pvc-b", refB, false)
	got := decode[wire.PodList](t, f.get(PathPrefix+"/v1/pods", nil))
	if len(got.Pods) != 2 {
		t.Fatalf("pods %+v", got.Pods)
	}
	a, b := got.Pods[0], got.Pods[1]
	if a.Dir != refA.DirName() || a.Namespace != "ns1" || a.Name != "api-0" || a.UID != refA.UID ||
		a.Volume != "v1:n:pvc-a" || a.Node != "node-a" || a.UnpublishedAt == nil {
		t.Errorf("retained pod %+v", a)
	}
	if b.Dir != refB.DirName() || b.UnpublishedAt != nil {
		t.Errorf("published pod %+v", b)
	}
}

func TestListFiles(t *testing.T) {
	f := newFixture(t, Config{})
	dir := f.pod("v1:n:pvc-a", refA, true)
	write(t, dir, "app/gc.log", []byte("gc\n"))
	write(t, dir, "app/dumps/heap.hprof", make([]byte, 1000))
	if err := os.Symlink("/etc/shadow", filepath.Join(dir, "app", "shadow")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "app", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := decode[wire.FileList](t, f.get(PathPrefix+"/v1/pods/"+refA.DirName()+"/files", nil))
	var paths []string
	for _, fl := range got.Files {
		paths = append(paths, fl.Path)
		if fl.Path == "app/dumps/heap.hprof" && fl.Size != 1000 {
			t.Errorf("size %d", fl.Size)
		}
	}
	slices.Sort(paths)
	if !slices.Equal(paths, []string{"app/dumps/heap.hprof", "app/gc.log"}) {
		t.Errorf("files %v", paths)
	}
	if got.Skipped["app/shadow"] != "symlink" || got.Skipped["app/fifo"] != "fifo" || len(got.Skipped) != 2 {
		t.Errorf("skipped %v", got.Skipped)
	}
}

func TestReadFileWholeAndRange(t *testing.T) {
	f := newFixture(t, Config{})
	dir := f.pod("v1:n:pvc-a", refA, true)
	data := make([]byte, 300<<10) // several chunks of the bucket
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	write(t, dir, "app/dumps/heap.hprof", data)
	rec := f.get(fileURL(refA.DirName(), "app/dumps/heap.hprof"), nil)
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), data) {
		t.Fatalf("status %d, %d bytes, identical %v", rec.Code, rec.Body.Len(), bytes.Equal(rec.Body.Bytes(), data))
	}
	etag := rec.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	// A resumed download: the rest from byte 100000, while the file is the one the ETag names.
	rec = f.get(fileURL(refA.DirName(), "app/dumps/heap.hprof"), map[string]string{"Range": "bytes=100000-", "If-Range": etag})
	if rec.Code != http.StatusPartialContent || !bytes.Equal(rec.Body.Bytes(), data[100000:]) {
		t.Fatalf("range: status %d, %d bytes", rec.Code, rec.Body.Len())
	}
	// The file changed: If-Range no longer matches and the whole new file comes back.
	write(t, dir, "app/dumps/heap.hprof", data[:5000])
	rec = f.get(fileURL(refA.DirName(), "app/dumps/heap.hprof"), map[string]string{"Range": "bytes=100000-", "If-Range": etag})
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), data[:5000]) {
		t.Fatalf("changed file: status %d, %d bytes", rec.Code, rec.Body.Len())
	}
}

// TestReadRefuses plants what a hostile pod could and asks for what a hostile client could: nothing outside the pod
// directory's own regular files is ever read.
func TestReadRefuses(t *testing.T) {
	f := newFixture(t, Config{})
	dir := f.pod("v1:n:pvc-a", refA, true)
	write(t, dir, "app/gc.log", []byte("mine\n"))
	outside := t.TempDir()
	write(t, outside, "secret", []byte("not yours\n"))
	write(t, f.root, "toplevel", []byte("root file\n"))
	for _, l := range []struct{ target, name string }{
		{filepath.Join(outside, "secret"), "app/link"}, {outside, "app/linkdir"}, {"/dev/zero", "app/zero"},
	} {
		if err := os.Symlink(l.target, filepath.Join(dir, l.name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mkfifo(filepath.Join(dir, "app", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(dir, "app", "null"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	write(t, dir, "app/bound", nil)
	fstest.BindMount(t, filepath.Join(outside, "secret"), filepath.Join(dir, "app", "bound"))
	if err := os.Mkdir(filepath.Join(dir, "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	fstest.BindMount(t, outside, filepath.Join(dir, "mnt"))
	// A directory named like a pod directory that no record knows.
	unknown := store.PodRef{Namespace: "ns1", Name: "ghost", UID: "0b7c8f6e-3333-4c3e-9d6a-000000000003"}
	write(t, f.root, unknown.DirName()+"/app/gc.log", []byte("ghost\n"))

	for _, tc := range []struct {
		dir, path string
		want      int
	}{
		{refA.DirName(), "app/gc.log", http.StatusOK},
		{refA.DirName(), "../toplevel", http.StatusBadRequest},
		{refA.DirName(), "app/../../toplevel", http.StatusBadRequest},
		{refA.DirName(), "app/./gc.log", http.StatusBadRequest},
		{refA.DirName(), "/etc/passwd", http.StatusBadRequest},
		{refA.DirName(), "app//gc.log", http.StatusBadRequest},
		{refA.DirName(), "", http.StatusBadRequest},
		{refA.DirName(), "app/gc.log\x00", http.StatusBadRequest},
		{refA.DirName(), "app/link", http.StatusForbidden},
		{refA.DirName(), "app/linkdir/secret", http.StatusForbidden},
		{refA.DirName(), "app/zero", http.StatusForbidden},
		{refA.DirName(), "app/fifo", http.StatusForbidden},
		{refA.DirName(), "app/null", http.StatusForbidden},
		{refA.DirName(), "app", http.StatusForbidden},
		{refA.DirName(), "app/gc.log/x", http.StatusForbidden},
		{refA.DirName(), "app/bound", http.StatusForbidden},
		{refA.DirName(), "mnt/secret", http.StatusForbidden},
		{refA.DirName(), "app/missing", http.StatusNotFound},
		// net/http's mux cleans ".." out of the URL path and redirects to /retained/v1/file, which is no endpoint.
		{"..", "toplevel", http.StatusTemporaryRedirect},
		{"a..b", "toplevel", http.StatusBadRequest},
		{".keeplog", "volumes", http.StatusBadRequest},
		{unknown.DirName(), "app/gc.log", http.StatusNotFound},
	} {
		rec := f.get(fileURL(tc.dir, tc.path), nil)
		if rec.Code != tc.want {
			t.Errorf("%s %q: status %d (%s), want %d", tc.dir, tc.path, rec.Code, bytes.TrimSpace(rec.Body.Bytes()), tc.want)
		}
		if tc.want != http.StatusOK && (bytes.Contains(rec.Body.Bytes(), []byte("not yours")) ||
			bytes.Contains(rec.Body.Bytes(), []byte("root file")) || bytes.Contains(rec.Body.Bytes(), []byte("ghost"))) {
			t.Errorf("%s %q: the answer holds a refused file's bytes", tc.dir, tc.path)
		}
	}
	if rec := f.get(PathPrefix+"/v1/pods/"+unknown.DirName()+"/files", nil); rec.Code != http.StatusNotFound {
		t.Errorf("files of an unknown directory: %d", rec.Code)
	}
}

// TestStreamsBounded: with every stream slot taken, a download is answered 429 and does not wait.
func TestStreamsBounded(t *testing.T) {
	f := newFixture(t, Config{MaxStreams: 1})
	dir := f.pod("v1:n:pvc-a", refA, true)
	write(t, dir, "app/gc.log", []byte("gc\n"))
	f.h.streams <- struct{}{}
	if rec := f.get(fileURL(refA.DirName(), "app/gc.log"), nil); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("status %d with every slot taken", rec.Code)
	}
	<-f.h.streams
	if rec := f.get(fileURL(refA.DirName(), "app/gc.log"), nil); rec.Code != http.StatusOK {
		t.Fatalf("status %d with a free slot", rec.Code)
	}
}
