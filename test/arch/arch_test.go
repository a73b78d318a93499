package arch

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/keeplog/keeplog"

// features are the packages that must not import one another (directly or through any other package).
var features = []string{"pkg/archiver", "pkg/dump", "pkg/gc", "pkg/usage", "pkg/podinfo"}

// deps lists the packages pkg imports, directly or not (go list -deps), test files excluded.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+"/"+pkg)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func TestFeaturePackagesDoNotImportEachOther(t *testing.T) {
	for _, f := range features {
		seen := map[string]bool{}
		for _, d := range deps(t, f) {
			seen[d] = true
		}
		if !seen[module+"/pkg/store"] {
			t.Fatalf("%s: go list -deps does not list pkg/store: the listing is broken", f)
		}
		for _, other := range features {
			if other != f && seen[module+"/"+other] {
				t.Errorf("%s imports %s: feature packages are joined in cmd/keeplog only", f, other)
			}
		}
	}
}

func TestAPIIsALeaf(t *testing.T) {
	for _, d := range deps(t, "pkg/api") {
		if strings.HasPrefix(d, module+"/") && d != module+"/pkg/api" {
			t.Errorf("pkg/api imports %s: it must import nothing of keeplog", d)
		}
	}
}

// The archiver parses a pod directory name once, at discovery (poddir.go's parsePodDir); everything after carries
// the parsed value.
func TestArchiverParsesPodDirNamesOnlyAtDiscovery(t *testing.T) {
	files, err := filepath.Glob("../../pkg/archiver/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no archiver sources (%v)", err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || filepath.Base(f) == "poddir.go" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "ParsePodDirName") {
			t.Errorf("%s calls store.ParsePodDirName: the archiver parses pod directory names in poddir.go only", f)
		}
	}
}
