package arch

import (
	"os/exec"
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
