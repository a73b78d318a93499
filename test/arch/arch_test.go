package arch

import (
	"go/ast"
	"go/parser"
	"go/token"
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

// The archiver parses a pod directory name once, where it discovers it (poddir.go's discover: the root's listing,
// a watch event, a name it was told of), or where an item enters the journal by name alone (journal.go: read from
// disk at start, or Put); everything after carries the parsed value. Every call of parsePodDir or
// store.ParsePodDirName in the archiver's non-test code is in one of those functions.
func TestArchiverParsesPodDirNamesOnlyAtDiscovery(t *testing.T) {
	allowed := map[string]bool{
		"poddir.go parsePodDir":  true, // the one call of store.ParsePodDirName
		"poddir.go discover":     true,
		"journal.go OpenJournal": true,
		"journal.go Put":         true,
	}
	files, err := filepath.Glob("../../pkg/archiver/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no archiver sources (%v)", err)
	}
	seen := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			where := filepath.Base(f) + " " + fn.Name.Name
			ast.Inspect(fn, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				var name string
				switch fun := call.Fun.(type) {
				case *ast.Ident:
					name = fun.Name
				case *ast.SelectorExpr:
					name = fun.Sel.Name
				}
				if name != "parsePodDir" && name != "ParsePodDirName" {
					return true
				}
				seen[where] = true
				if !allowed[where] {
					t.Errorf("%s: %s parses a pod directory name (%s): the archiver parses one only at discovery "+
						"(poddir.go's discover) or when an item enters the journal by name; carry the podDir",
						fset.Position(call.Pos()), fn.Name.Name, name)
				}
				return true
			})
		}
	}
	for where := range allowed {
		if !seen[where] {
			t.Errorf("%s no longer parses pod directory names: the check looks in the wrong places (update it)", where)
		}
	}
}
