package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// bodyMarker is in the fake API server's pod list: a log line that has it carries a response body.
const bodyMarker = "keeplog-log-test-body-marker"

// --v governs every logger in both formats, contextual loggers included (client-go logs requests through
// klog.FromContext): at the chart's default -v=2 no line carries a request or response body or a V(3)+ message; at
// -v=9 client-go's request lines and bodies appear, so that the check can fail.
func TestVerbosityGovernsEveryLogger(t *testing.T) {
	bin := keeplogBinary(t)
	for _, tc := range []struct {
		format string
		v      int
		quiet  bool
	}{
		{"json", 2, true},
		{"json", 9, false},
		{"text", 2, true},
		{"text", 9, false},
	} {
		t.Run(fmt.Sprintf("%s-v%d", tc.format, tc.v), func(t *testing.T) {
			out := runAgainstFakeAPI(t, bin, "--log-format="+tc.format, fmt.Sprintf("-v=%d", tc.v))
			bodies := strings.Count(out, bodyMarker)
			requests := strings.Count(out, "/api/v1/pods")
			if !tc.quiet {
				if bodies == 0 || requests == 0 {
					t.Fatalf("-v=%d: %d lines with response bodies, %d with request URLs; want both (client-go logs them at V(6)-V(8)):\n%s",
						tc.v, bodies, requests, out)
				}
				return
			}
			if bodies > 0 || requests > 0 {
				t.Fatalf("-v=%d: %d response bodies and %d request URLs logged, want none:\n%s", tc.v, bodies, requests, clip(out))
			}
			if tc.format != "json" {
				return
			}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var rec struct{ Level slog.Level } // V(n) is level -n
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("not a JSON line: %q: %v", line, err)
				}
				if rec.Level < slog.Level(-tc.v) {
					t.Fatalf("-v=%d: a V(%d) line:\n%s", tc.v, -rec.Level, line)
				}
			}
		})
	}
}

// runAgainstFakeAPI runs bin with a kubeconfig pointing to a fake API server on loopback until the server has
// answered a few requests, stops it with SIGTERM and returns its stderr.
func runAgainstFakeAPI(t *testing.T, bin string, args ...string) string {
	t.Helper()
	var served atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("watch") == "true" {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select { // an open watch with no events, until keeplog or the test goes
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		}
		if r.URL.Path == "/api/v1/pods" {
			fmt.Fprintf(w, `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"%s","namespace":"ns","uid":"u1"}}]}`, bodyMarker)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"not here"}`)
	}))
	defer api.Close()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: %q}}]
users: [{name: fake, user: {token: not-a-secret}}]
contexts: [{name: fake, context: {cluster: fake, user: fake}}]
current-context: fake
`, api.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"--endpoint=unix://" + filepath.Join(dir, "csi.sock"), "--node-id=log-test",
		"--root=" + filepath.Join(dir, "root"), "--http-address=", "--kubeconfig=" + kubeconfig}, args...)...)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for served.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // the answers logged
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	if served.Load() < 3 {
		t.Fatalf("keeplog made %d requests to the fake API server in 30 s, want 3:\n%s", served.Load(), stderr.String())
	}
	return stderr.String()
}

func clip(s string) string {
	if len(s) > 4000 {
		return s[:4000] + "\n…"
	}
	return s
}

// keeplogBinary is $KEEPLOG_BIN (make passes bin/keeplog) or a fresh build of this package.
func keeplogBinary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("KEEPLOG_BIN"); b != "" {
		return b
	}
	bin := filepath.Join(t.TempDir(), "keeplog")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/keeplog: %v\n%s", err, out)
	}
	return bin
}
