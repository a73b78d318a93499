//go:build soak

package soak

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/archiver"
	"github.com/keeplog/keeplog/test/binary"
)

// What the wrong-credentials tests (S3 and SFTP) read of a running keeplog: the pod's status file, its log and
// /metrics, and whether a secret shows in any of them.

// fileStatus is file rel's line of the pod's archive status file (the zero line when there is none yet).
func fileStatus(t *testing.T, e *archEnv, pod binary.Pod, rel string) archiver.FileStatus {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.kl.Root, pod.DirName(), api.ArchiveStatusPath))
	if err != nil {
		return archiver.FileStatus{}
	}
	var ps archiver.PodStatus
	if err := json.Unmarshal(b, &ps); err != nil {
		t.Fatalf("status file: %v", err)
	}
	for _, f := range ps.Files {
		if f.Path == rel {
			return f
		}
	}
	return archiver.FileStatus{}
}

// waitStatusError waits until the pod's status file gives the dump an error that contains want, and returns its
// line.
func waitStatusError(t *testing.T, e *archEnv, pod binary.Pod, want string) archiver.FileStatus {
	t.Helper()
	return waitStatus(t, e, pod, want, func(st archiver.FileStatus) bool {
		return strings.Contains(st.Error, want) && st.State != string(archiver.StateDone)
	})
}

// waitStatus waits until the dump's line of the pod's status file satisfies ok (what describes it for the failure
// message), and returns the line. The status file is rewritten shortly after the journal changes, not at once.
func waitStatus(t *testing.T, e *archEnv, pod binary.Pod, what string, ok func(archiver.FileStatus) bool) archiver.FileStatus {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := fileStatus(t, e, pod, dumpName(0))
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("the status file does not say %q after a minute: %+v; keeplog's log:\n%s", what, st, e.kl.LogTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logSaysRetry checks that keeplog logged a failed attempt with its cause.
func logSaysRetry(t *testing.T, e *archEnv, cause string) {
	t.Helper()
	b, err := os.ReadFile(e.kl.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "Upload failed; will retry") && strings.Contains(l, cause) {
			return
		}
	}
	t.Errorf("keeplog logged no retry that says %q:\n%s", cause, e.kl.LogTail(20))
}

// noSecrets checks that none of secrets appears in keeplog's log, the pod's status file, the journal or /metrics
// (the failure names the secret by its index only).
func noSecrets(t *testing.T, ctx context.Context, e *archEnv, pod binary.Pod, secrets ...string) {
	t.Helper()
	texts := map[string]string{}
	for name, p := range map[string]string{"log": e.kl.LogPath, "status file": filepath.Join(e.kl.Root, pod.DirName(), api.ArchiveStatusPath)} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		texts[name] = string(b)
	}
	journal, _ := filepath.Glob(filepath.Join(e.kl.Root, ".keeplog", "archiver", "items", "*.json"))
	if len(journal) == 0 {
		t.Errorf("no journal item under %s: nothing to look for secrets in", filepath.Join(e.kl.Root, ".keeplog", "archiver", "items"))
	}
	for _, p := range journal {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		texts["journal "+filepath.Base(p)] = string(b)
	}
	texts["metrics"] = metricsText(t, ctx, e.kl.HTTPAddr)
	for name, text := range texts {
		for i, s := range secrets {
			if s == "" {
				t.Fatalf("secret %d is empty", i)
			}
			if strings.Contains(text, s) {
				t.Errorf("keeplog's %s quotes secret %d", name, i)
			}
		}
	}
}

// metricsText is /metrics as keeplog serves it.
func metricsText(t *testing.T, ctx context.Context, addr string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
