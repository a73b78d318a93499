package docs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Reading the names the code defines, with go/ast (no build, no registry of names kept here).

// code holds the names defined in the code.
type code struct {
	flags, metrics, reasons, params, annotations map[string]bool
}

func readCode(t *testing.T) code {
	t.Helper()
	c := code{flags: map[string]bool{}, metrics: map[string]bool{}, reasons: map[string]bool{}, params: map[string]bool{},
		annotations: map[string]bool{}}
	for _, dir := range goDirs(t, "cmd", "pkg", "internal") {
		files := parseDir(t, dir)
		consts := constants(files)
		for name, v := range consts {
			switch {
			case strings.HasPrefix(v, "keeplog.csi.io/") && len(v) > len("keeplog.csi.io/") && !strings.Contains(name, "Version"):
				c.annotations[v] = true
			case strings.HasPrefix(name, "Reason"):
				c.reasons[v] = true
			case strings.Contains(name, "Metric") && strings.HasPrefix(v, "keeplog_"):
				c.metrics[v] = true
			case strings.HasPrefix(name, "Param"): // pkg/policy's today
				c.params[v] = true
			}
		}
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.KeyValueExpr:
					if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Name" {
						if v := eval(n.Value, consts); strings.HasPrefix(v, "keeplog_") {
							c.metrics[v] = true
						}
					}
				case *ast.CallExpr:
					call(n, dir, consts, c)
				}
				return true
			})
		}
	}
	return c
}

var flagDefiners = []string{"Bool", "BoolVar", "Duration", "DurationVar", "Float64", "Float64Var", "Func", "Int",
	"Int64", "Int64Var", "IntVar", "String", "StringVar", "TextVar", "Uint", "UintVar", "Var"}

// call records a flag definition in cmd/keeplog, a NewDesc metric, or a literal Event reason.
func call(n *ast.CallExpr, dir string, consts map[string]string, c code) {
	sel, ok := n.Fun.(*ast.SelectorExpr)
	if !ok {
		return
	}
	switch m := sel.Sel.Name; {
	case filepath.Base(dir) == "keeplog" && slices.Contains(flagDefiners, m):
		i := 0
		if strings.HasSuffix(m, "Var") {
			i = 1
		}
		if len(n.Args) > i {
			if v := eval(n.Args[i], consts); v != "" {
				c.flags[v] = true
			}
		}
	case m == "NewDesc" && len(n.Args) > 0:
		if v := eval(n.Args[0], consts); strings.HasPrefix(v, "keeplog_") {
			c.metrics[v] = true
		}
	case (m == "PodEvent" || m == "Event") && len(n.Args) == 4:
		if v := eval(n.Args[2], consts); v != "" {
			c.reasons[v] = true
		}
	}
}

// constants evaluates a package's string constants (literals and sums of literals and other constants).
func constants(files []*ast.File) map[string]string {
	exprs := map[string]ast.Expr{}
	for _, f := range files {
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
				for _, s := range g.Specs {
					vs := s.(*ast.ValueSpec)
					for i, name := range vs.Names {
						if i < len(vs.Values) {
							exprs[name.Name] = vs.Values[i]
						}
					}
				}
			}
		}
	}
	out := map[string]string{}
	for range 3 { // constants defined from constants, a few levels deep
		for name, e := range exprs {
			if v := eval(e, out); v != "" {
				out[name] = v
			}
		}
	}
	return out
}

// eval is the string value of a literal, a known constant, or a sum of them; "" otherwise.
func eval(e ast.Expr, consts map[string]string) string {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == token.STRING {
			v, _ := strconv.Unquote(e.Value)
			return v
		}
	case *ast.Ident:
		return consts[e.Name]
	case *ast.BinaryExpr:
		if e.Op == token.ADD {
			if l, r := eval(e.X, consts), eval(e.Y, consts); l != "" && r != "" {
				return l + r
			}
		}
	case *ast.CallExpr: // a typed constant: LimitAction("warn")
		if len(e.Args) == 1 {
			return eval(e.Args[0], consts)
		}
	}
	return ""
}

// goDirs lists the directories under roots that hold Go code.
func goDirs(t *testing.T, roots ...string) []string {
	t.Helper()
	var dirs []string
	for _, r := range roots {
		err := filepath.WalkDir(filepath.Join(repo, r), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				if m, _ := filepath.Glob(filepath.Join(p, "*.go")); len(m) > 0 {
					dirs = append(dirs, p)
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return dirs
}

// parseDir parses a directory's non-test Go files.
func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	var files []*ast.File
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), n, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}
