// Package docs checks that docs/ and the code name the same things: every command-line flag of cmd/keeplog, every
// chart value, metric, Event reason, StorageClass parameter and pod annotation defined in the code appears in docs/,
// and every keeplog flag, metric and annotation the docs (and README.md) name exists in the code.
//
// The names are read from the code where it defines them, with go/ast, not from a list kept here: flags from the
// flag.FlagSet calls in cmd/keeplog, metrics from the Name of prometheus *Opts, NewDesc and *Metric* constants,
// Event reasons from Reason* constants and literal reasons passed to PodEvent/Event, parameters from Param*
// constants (pkg/policy's today), annotations from every constant whose value starts with "keeplog.csi.io/". When the names move
// (one vocabulary package), the same walk finds them there. Every Makefile target is named too, and every relative
// link resolves. `make lint` runs this test.
package docs

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"
)

const repo = "../.."

// foreignFlags are flags of other programs that the docs show (csi-provisioner, kubelet, helm, kubectl, go, …).
// A keeplog flag must never be listed here.
var foreignFlags = []string{
	"all", "all-platforms", "bind-address", "clusterrole", "group", "capacity-ownerref-level", "capacity-poll-interval", "config", "create-namespace", "dry-run",
	"enable-capacity", "extra-create-metadata", "field-selector", "from-file", "from-literal",
	"image-gc-high-threshold", "index", "install", "kube-version", "logs", "node-deployment", "overwrite", "platform",
	"bucket", "enable-aggregator-routing", "ldflags", "lifecycle-configuration", "secure-port", "tls-cert-file", "reuse-values", "root-dir", "set", "strict-topology", "tags", "trimpath", "validate", "verify",
	"worker-threads",
}

func TestDocsNameWhatTheCodeDefines(t *testing.T) {
	c := readCode(t)
	docs := readDocs(t, filepath.Join(repo, "docs"))
	for _, k := range []struct {
		what  string
		names map[string]bool
		quote func(string) string
	}{
		{"flag", c.flags, func(n string) string { return "--" + n }},
		{"metric", c.metrics, func(n string) string { return n }},
		{"Event reason", c.reasons, func(n string) string { return n }},
		{"StorageClass parameter", c.params, func(n string) string { return "`" + n + "`" }},
		{"pod annotation", c.annotations, func(n string) string { return n }},
	} {
		if len(k.names) == 0 {
			t.Errorf("found no %s in the code: the walk no longer finds where they are defined", k.what)
		}
		for _, n := range sorted(k.names) {
			if !containsWord(docs, k.quote(n)) {
				t.Errorf("the %s %s is not in docs/", k.what, k.quote(n))
			}
		}
	}
}

func TestDocsNameOnlyWhatExists(t *testing.T) {
	c := readCode(t)
	text := readDocs(t, filepath.Join(repo, "docs")) + readFile(t, filepath.Join(repo, "README.md"))
	known := map[string]bool{}
	for n := range c.flags {
		known[n] = true
	}
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs) // main registers klog's flags (--v) too
	fs.VisitAll(func(f *flag.Flag) { known[f.Name] = true })
	known["help"] = true // the flag package's own
	for _, f := range foreignFlags {
		if c.flags[f] {
			t.Errorf("--%s is keeplog's own flag: remove it from foreignFlags", f)
		}
		known[f] = true
	}
	// A name followed by -* is a family (csi-provisioner's --retry-interval-*), not a flag.
	for _, m := range regexp.MustCompile(`(?:^|[^-\w])--([a-z][a-z0-9-]*[a-z0-9])(-\*)?`).FindAllStringSubmatch(text, -1) {
		if m[2] == "" && !known[m[1]] {
			t.Errorf("the docs name --%s, which keeplog does not have (another program's flag? add it to foreignFlags)", m[1])
			known[m[1]] = true // once
		}
	}
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`\bkeeplog_[a-z0-9_]*[a-z0-9]`).FindAllString(text, -1) {
		base := m
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, s); ok && c.metrics[b] {
				base = b
			}
		}
		if !c.metrics[base] && !seen[m] {
			t.Errorf("the docs name the metric %s, which the code does not register", m)
		}
		seen[m] = true
	}
	// keeplog.csi.io/dump-* is a family; plugins/keeplog.csi.io/csi.sock and topology.keeplog.csi.io/node are not
	// annotations.
	for _, m := range regexp.MustCompile(`(?:^|[^./\w-])(keeplog\.csi\.io/[a-z0-9-]*[a-z0-9])(-\*)?`).FindAllStringSubmatch(text, -1) {
		if m[2] == "" && !c.annotations[m[1]] && !seen[m[1]] && m[1] != "keeplog.csi.io/v1alpha1" { // the API group version
			t.Errorf("the docs name %s, which the code does not define", m[1])
		}
		seen[m[1]] = true
	}
}

// Every chart value is documented: a value's path (`a.b.c`) or a group's (`a.b.*`) in backticks; a map whose own
// path is not named must have each of its keys named.
func TestDocsNameEveryChartValue(t *testing.T) {
	docs := readDocs(t, filepath.Join(repo, "docs"))
	var values map[string]any
	if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(repo, "charts", "keeplog", "values.yaml"))), &values); err != nil {
		t.Fatal(err)
	}
	var missing []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		if path != "" && (strings.Contains(docs, "`"+path+"`") || strings.Contains(docs, "`"+path+".*`")) {
			return
		}
		if m, ok := v.(map[string]any); ok && len(m) > 0 {
			for k, c := range m {
				walk(strings.TrimPrefix(path+"."+k, "."), c)
			}
			return
		}
		missing = append(missing, path)
	}
	walk("", values)
	sort.Strings(missing)
	for _, p := range missing {
		t.Errorf("the chart value %s is not in docs/ (docs/install.md's values table)", p)
	}
}

// Every target of the Makefile is named in docs/ as `make <target>`.
func TestDocsNameEveryMakeTarget(t *testing.T) {
	docs := readDocs(t, filepath.Join(repo, "docs"))
	rules := regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*):`).FindAllStringSubmatch(readFile(t, filepath.Join(repo, "Makefile")), -1)
	if len(rules) == 0 {
		t.Fatal("no rules found in the Makefile")
	}
	for _, r := range rules {
		if !containsWord(docs, "make "+r[1]) {
			t.Errorf("the make target %s is not in docs/ (docs/development.md's table)", r[1])
		}
	}
}

// Every relative link in docs/ and README.md names a file that exists and, with #anchor, a heading in it (GitHub's
// anchors: lower case, punctuation dropped, spaces as '-').
func TestDocsLinksResolve(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repo, "docs", "*.md"))
	files = append(files, filepath.Join(repo, "README.md"))
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, f := range files {
		for _, m := range link.FindAllStringSubmatch(readFile(t, f), -1) {
			if strings.Contains(m[1], "://") {
				continue
			}
			path, anchor, _ := strings.Cut(m[1], "#")
			target := f
			if path != "" {
				target = filepath.Join(filepath.Dir(f), path)
			}
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s links to %s: %v", f, m[1], err)
			} else if anchor != "" && strings.HasSuffix(target, ".md") && !anchors(t, target)[anchor] {
				t.Errorf("%s links to %s: no such heading", f, m[1])
			}
		}
	}
}

// anchors are the GitHub anchors of a Markdown file's headings (outside code blocks).
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	drop := regexp.MustCompile(`[^\w\- ]`)
	code := false
	for _, l := range strings.Split(readFile(t, path), "\n") {
		if strings.HasPrefix(l, "```") {
			code = !code
		}
		if !code && strings.HasPrefix(l, "#") {
			h := drop.ReplaceAllString(strings.ToLower(strings.TrimSpace(strings.TrimLeft(l, "#"))), "")
			out[strings.ReplaceAll(h, " ", "-")] = true
		}
	}
	return out
}

func readDocs(t *testing.T, dir string) string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.md"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no docs in %s: %v", dir, err)
	}
	var b strings.Builder
	for _, n := range names {
		b.WriteString(readFile(t, n) + "\n")
	}
	return b.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// containsWord reports whether s holds w not as part of a longer name (--retain-for is not --retain-for-x).
func containsWord(s, w string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], w)
		if j < 0 {
			return false
		}
		end := i + j + len(w)
		if end == len(s) || !isNameByte(s[end]) {
			return true
		}
		i = end
	}
}

func isNameByte(b byte) bool {
	return b == '-' || b == '_' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
