package krew

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/keeplog/keeplog/test/chart"
	"github.com/keeplog/keeplog/test/e2e/lab"
)

// validator builds (or finds cached) krew's validator and kubectl-krew beside it.
func validator(t *testing.T, repo string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(repo, "hack", "build-krew-validator.sh")).Output()
	if err != nil {
		t.Fatalf("hack/build-krew-validator.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func validate(t *testing.T, bin, manifest string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-manifest", manifest}, args...)...)
	// The validator installs each platform with `kubectl krew install`: kubectl and kubectl-krew on PATH.
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+lab.DefaultBinDir()+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestManifest: the committed manifest passes krew's structural validation, and the validator is not a rubber
// stamp: the same manifest with a name that does not match its file, a malformed sha256 or no platforms is refused.
func TestManifest(t *testing.T) {
	repo, err := chart.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := validator(t, repo)
	manifest := filepath.Join(repo, "krew", "keeplog.yaml")
	if out, err := validate(t, bin, manifest, "-skip-install"); err != nil {
		t.Fatalf("validate-krew-manifest %s: %v\n%s", manifest, err, out)
	}
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	m := string(data)
	sha := strings.Index(m, "sha256: ") + len("sha256: ")
	for name, broken := range map[string]string{
		"wrong name":   strings.Replace(m, "name: keeplog\n", "name: keeplog-other\n", 1),
		"short sha256": m[:sha] + m[sha+1:],
		"no platforms": m[:max(strings.Index(m, "  platforms:"), 0)],
	} {
		path := filepath.Join(t.TempDir(), "keeplog.yaml")
		if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := validate(t, bin, path, "-skip-install"); err == nil {
			t.Errorf("%s: the validator accepted it\n%s", name, out)
		}
	}
}

// TestManifestInstalls: hack/krew-release.sh builds this machine's platform's archive and its manifest (the
// committed one's version, the URLs on a loopback server), and krew's validator installs it with kubectl krew: the
// sha256 matches, the binary and LICENSE are extracted.
func TestManifestInstalls(t *testing.T) {
	repo, err := chart.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := validator(t, repo)
	data, err := os.ReadFile(filepath.Join(repo, "krew", "keeplog.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	version := regexp.MustCompile(`(?m)^  version: (v\S+)$`).FindStringSubmatch(string(data))
	if version == nil {
		t.Fatal("no spec.version in the manifest")
	}
	dir := t.TempDir()
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	manifest := filepath.Join(dir, "keeplog.yaml")
	cmd := exec.Command(filepath.Join(repo, "hack", "krew-release.sh"))
	cmd.Env = append(os.Environ(), "VERSION="+version[1], "PLATFORMS=linux/"+runtime.GOARCH, "BASE_URL="+srv.URL,
		"OUT_DIR="+dir, "OUT_MANIFEST="+manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/krew-release.sh: %v\n%s", err, out)
	}
	out, err := validate(t, bin, manifest)
	if err != nil || !strings.Contains(out, "installing spec.platform[0]") {
		t.Fatalf("validate-krew-manifest (with install): %v\n%s", err, out)
	}
}
