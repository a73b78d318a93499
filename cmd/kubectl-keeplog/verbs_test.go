package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/keeplog/keeplog/pkg/retrievalapi"
)

func TestLs(t *testing.T) {
	c, _, _ := fixture(t)
	alice := c.kubeconfig("alice", "ns1")
	out, errs, code := kk(t, alice, "ls")
	if code != 0 || !strings.HasPrefix(out, "NAME ") || !strings.Contains(out, "api-7d9f-x2k4") || !strings.Contains(out, "worker-0") ||
		!strings.Contains(out, "Retained") || strings.Contains(out, "web-0") {
		t.Errorf("ls: exit %d\n%s%s", code, out, errs)
	}
	out, _, code = kk(t, alice, "ls", "-A")
	if code != 0 || !strings.HasPrefix(out, "NAMESPACE ") || strings.Contains(out, "web-0") {
		t.Errorf("ls -A: exit %d\n%s", code, out)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--reason", "OOMKilled"}, []string{"api-7d9f-x2k4"}},
		{[]string{"--reason", "oomkilled"}, []string{"api-7d9f-x2k4"}},
		{[]string{"--reason", "Completed"}, []string{"worker-0"}},
		{[]string{"--owner", "deploy/api"}, []string{"api-7d9f-x2k4"}},
		{[]string{"--owner", "rs/api-7d9f"}, []string{"api-7d9f-x2k4"}},
		{[]string{"--owner", "deploy/other"}, nil},
		{[]string{"--node", "node-1"}, []string{"api-7d9f-x2k4", "worker-0"}},
		{[]string{"--node", "node-9"}, nil},
	} {
		out, _, code := kk(t, alice, append([]string{"ls", "-o", "json"}, tc.args...)...)
		var l retrievalapi.RetainedPodList
		if code != 0 || json.Unmarshal([]byte(out), &l) != nil {
			t.Fatalf("%v: exit %d %s", tc.args, code, out)
		}
		var got []string
		for _, p := range l.Items {
			got = append(got, p.Status.PodName)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("ls %v: %v, want %v", tc.args, got, tc.want)
		}
	}
	out, _, code = kk(t, alice, "ls", "-o", "yaml")
	var l retrievalapi.RetainedPodList
	if code != 0 || yaml.Unmarshal([]byte(out), &l) != nil || len(l.Items) != 2 || l.Kind != "RetainedPodList" {
		t.Errorf("ls -o yaml: exit %d\n%s", code, out)
	}
	out, _, code = kk(t, alice, "ls", "-o", "wide")
	if code != 0 || !strings.Contains(out, "replicaset/api-7d9f") || !strings.Contains(out, "OOMKilled") || !strings.Contains(out, refA.UID) {
		t.Errorf("ls -o wide: exit %d\n%s", code, out)
	}
	if out, errs, code := kk(t, alice, "ls", "-n", "ns2"); code != 1 || !strings.Contains(errs, "403") || strings.Contains(out, "web-0") {
		t.Errorf("ls -n ns2: exit %d %q %q", code, out, errs)
	}
	if _, errs, code := kk(t, alice, "ls", "-o", "table"); code != 2 || !strings.Contains(errs, "--output") {
		t.Errorf("ls -o table: exit %d %q", code, errs)
	}
	if _, errs, code := kk(t, c.kubeconfig("mallory", "ns1"), "ls"); code != 1 || !strings.Contains(errs, "401") {
		t.Errorf("unknown user: exit %d %q", code, errs)
	}
}

func TestLogs(t *testing.T) {
	c, _, _ := fixture(t)
	alice := c.kubeconfig("alice", "ns1")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"api-7d9f-x2k4"}, "second run\noops\n"},
		{[]string{"api-7d9f-x2k4", "-c", "sidecar"}, "side\n"},
		{[]string{"api-7d9f-x2k4", "--file", "gc.log"}, "gc pause 12ms\n"},
		{[]string{"api-7d9f-x2k4." + refA.UID, "--file", "gc.log", "-c", "app"}, "gc pause 12ms\n"},
	} {
		if out, errs, code := kk(t, alice, append([]string{"logs"}, tc.args...)...); code != 0 || out != tc.want {
			t.Errorf("logs %v: exit %d %q %q, want %q", tc.args, code, out, errs, tc.want)
		}
	}
	for _, args := range [][]string{{"api-7d9f-x2k4", "--file", "none.log"}, {"api-7d9f-x2k4", "-c", "nope"}, {"ghost"}} {
		if _, errs, code := kk(t, alice, append([]string{"logs"}, args...)...); code != 1 || errs == "" {
			t.Errorf("logs %v: exit %d %q", args, code, errs)
		}
	}
	if _, _, code := kk(t, alice, "logs"); code != 2 {
		t.Errorf("logs without a pod: exit %d", code)
	}
}

func TestCp(t *testing.T) {
	c, dir, _ := fixture(t)
	alice := c.kubeconfig("alice", "ns1")
	data, err := os.ReadFile(filepath.Join(dir, "app", "dumps", "heap.hprof"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	local := filepath.Join(t.TempDir(), "heap.hprof")
	out, errs, code := kk(t, alice, "cp", "api-7d9f-x2k4:app/dumps/heap.hprof", local)
	if code != 0 || !strings.HasPrefix(out, want+"  "+local) || sha(t, local) != want {
		t.Fatalf("cp: exit %d %q %q, want %s", code, out, errs, want)
	}
	// Resume: a part with the first 100000 bytes and the file's ETag, as an interrupted cp leaves it.
	resumed := filepath.Join(t.TempDir(), "resumed")
	if err := os.WriteFile(resumed+".part", data[:100000], 0o600); err != nil {
		t.Fatal(err)
	}
	etag := etagOf(t, c, alice)
	if err := os.WriteFile(resumed+".part.etag", []byte(etag), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, _, code := kk(t, alice, "cp", "api-7d9f-x2k4:app/dumps/heap.hprof", resumed); code != 0 || sha(t, resumed) != want ||
		!strings.HasPrefix(out, want) {
		t.Errorf("resumed cp: exit %d %q", code, out)
	}
	// A part of a file that changed since (another ETag): the whole file again, not a splice.
	changed := filepath.Join(t.TempDir(), "changed")
	if err := os.WriteFile(changed+".part", []byte("garbage garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(changed+".part.etag", []byte(`"old"`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, code := kk(t, alice, "cp", "api-7d9f-x2k4:app/dumps/heap.hprof", changed); code != 0 || sha(t, changed) != want {
		t.Errorf("cp over a stale part: exit %d", code)
	}
	for _, src := range []string{"api-7d9f-x2k4:../x", "api-7d9f-x2k4:app/none"} {
		if _, errs, code := kk(t, alice, "cp", src, filepath.Join(t.TempDir(), "x")); code != 1 || errs == "" {
			t.Errorf("cp %s: exit %d %q", src, code, errs)
		}
	}
	if _, errs, code := kk(t, c.kubeconfig("bob", "ns1"), "cp", "api-7d9f-x2k4:app/gc.log", filepath.Join(t.TempDir(), "x")); code != 1 ||
		!strings.Contains(errs, "403") {
		t.Errorf("bob cp: exit %d %q", code, errs)
	}
	if _, _, code := kk(t, alice, "cp", "no-colon", "x"); code != 2 {
		t.Errorf("cp without <pod>:<path>: exit %d", code)
	}
}

// etagOf asks the API for the dump's ETag with a one-byte range.
func etagOf(t *testing.T, c *cluster, kubeconfig string) string {
	t.Helper()
	g := globalFlags{kubeconfig: kubeconfig}
	cl, err := g.client()
	if err != nil {
		t.Fatal(err)
	}
	p, err := cl.resolve(t.Context(), "ns1", "api-7d9f-x2k4")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cl.open(t.Context(), p, "app/dumps/heap.hprof", map[string][]string{"Range": {"bytes=0-0"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("ETag") == "" {
		t.Fatal("no ETag")
	}
	return resp.Header.Get("ETag")
}

func sha(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestDescribe(t *testing.T) {
	c, _, _ := fixture(t)
	out, errs, code := kk(t, c.kubeconfig("alice", "ns1"), "describe", "api-7d9f-x2k4")
	for _, want := range []string{"Name:", "api-7d9f-x2k4", "Node:", "node-1", "Owner: Deployment api", "OOMKilled (exit 137)",
		"app/dumps/heap.hprof", "400000"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe: no %q (exit %d)\n%s%s", want, code, out, errs)
		}
	}
	if _, _, code := kk(t, c.kubeconfig("alice", "ns1"), "describe", "web-0"); code != 1 {
		t.Errorf("describe of a pod in another namespace: exit %d", code)
	}
}

func TestUsage(t *testing.T) {
	c, _, _ := fixture(t)
	if _, _, code := kk(t, c.kubeconfig("alice", "ns1"), "frobnicate"); code != 2 {
		t.Errorf("unknown verb: exit %d", code)
	}
	if _, _, code := kk(t, c.kubeconfig("alice", "ns1"), "ls", "--bogus"); code != 2 {
		t.Errorf("unknown flag: exit %d", code)
	}
}

// syncBuffer is a bytes.Buffer safe for the follow goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestLogsFollow: -f prints the file, then what is appended to it (fetched from the offset with Range), until the
// context ends.
func TestLogsFollow(t *testing.T) {
	c, dir, _ := fixture(t)
	alice := c.kubeconfig("alice", "ns1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"logs", "api-7d9f-x2k4", "--file", "gc.log", "-f", "--kubeconfig=" + alice}, &out, &errb)
	}()
	waitFor := func(want string) {
		t.Helper()
		for i := 0; i < 100 && out.String() != want; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if out.String() != want {
			t.Fatalf("output %q, want %q (stderr %q)", out.String(), want, errb.String())
		}
	}
	waitFor("gc pause 12ms\n")
	f, err := os.OpenFile(filepath.Join(dir, "app", "gc.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("gc pause 30ms\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	waitFor("gc pause 12ms\ngc pause 30ms\n")
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d after the context ended: %s", code, errb.String())
	}
}
