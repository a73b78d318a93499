package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// There is no Docker here to build the image, so check what can go wrong without one: the build stage copies every
// directory of this module that cmd/keeplog compiles from, .dockerignore lets them through, and the Go image is
// the go.mod version.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repo, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	copied := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^COPY ([a-z]+)/ `).FindAllStringSubmatch(df, -1) {
		copied[m[1]] = true
	}
	ignore, err := os.ReadFile(filepath.Join(repo, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.ImportPath}}{{end}}{{end}}", "./cmd/keeplog")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/keeplog: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		rel := strings.TrimPrefix(pkg, "github.com/keeplog/keeplog/")
		top, _, _ := strings.Cut(rel, "/")
		if !copied[top] {
			t.Errorf("cmd/keeplog compiles %s but the Dockerfile does not COPY %s/", pkg, top)
		}
		if !strings.Contains(string(ignore), "!"+top+"/") {
			t.Errorf(".dockerignore does not let %s/ into the build context", top)
		}
	}
	gomod, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go ([0-9.]+)$`).FindStringSubmatch(string(gomod))
	arg := regexp.MustCompile(`(?m)^ARG GO_VERSION=([0-9.]+)$`).FindStringSubmatch(df)
	if goLine == nil || arg == nil || goLine[1] != arg[1] {
		t.Errorf("Dockerfile GO_VERSION %v and go.mod's go line %v differ", arg, goLine)
	}
	for _, want := range []string{"CGO_ENABLED=0", "apt-get install -y --no-install-recommends mount", `ENTRYPOINT ["/usr/local/bin/keeplog"]`} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
