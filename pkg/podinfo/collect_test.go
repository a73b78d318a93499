package podinfo

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"k8s.io/utils/clock"
	"sigs.k8s.io/yaml"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

const (
	snippetDir  = "../../charts/keeplog/files/collectors"
	snippetRoot = "/var/log/keeplog" // the root the snippets are written for
	snippetPods = "/var/log/pods"
)

// containerOperatorPath is the rule OpenTelemetry's container operator applies to a path (stanza v0.165.1,
// parseLogPathInto; the regex it replaced): what every /var/log/pods parser expects.
var containerOperatorPath = regexp.MustCompile(`^.*/(?P<namespace>[^_/]+)_(?P<pod>[^_/]+)_(?P<uid>[a-f0-9-]+)/(?P<container>[^._/]+)/(?P<restart>[0-9]+)\.log$`)

// collectTree makes, with keeplog's own code, a root with one pod directory as a node has it after the pod ended:
// keeplog's metadata, end state and stdout copies (and their kubelet-layout links), the store's records, and what an
// application leaves: text logs, a heap dump, a core, archives. It returns the root, kubelet's log root, and the files
// each part of the contract must read.
func collectTree(t *testing.T) (root, pods string, stdout, apps []string) {
	t.Helper()
	e := newLogEnv(t)
	root = filepath.Dir(e.podDir)
	if _, err := store.Open(root, clock.RealClock{}); err != nil {
		t.Fatal(err)
	}
	w := NewWriter(Options{Clock: clocktesting.NewFakePassiveClock(fixedNow)})
	if err := w.WriteMinimal(e.podDir, PodContext{Pod: testRef}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteEndStateUnavailable(e.podDir, testRef, fixedNow, os.ErrNotExist); err != nil {
		t.Fatal(err)
	}
	e.appendSrc("0.log", "stdout line")
	e.appendSrc("1.log", "after a restart")
	e.copy()
	for name, content := range map[string]string{
		"app/gc.log": "gc", "app/access.log": "GET /", "top.log": "written without subPath",
		"app/heap.hprof": "JAVA PROFILE 1.0.2", "app/core.4242": "\x7fELF", "app/old.log.gz": "\x1f\x8b",
		"app/gc.log.1": "rotated by the app", "app/dumps.tar": "tar", "app/.keeplog-tmp-x.log": "a temp file",
		".keeplog-archive-status.json": "{}", ".keeplog.untrusted-1/forged.log": "moved aside",
	} {
		p := filepath.Join(e.podDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, p, content)
	}
	tree := filepath.Join(root, api.PodLogsDir, testRef.DirName(), "app")
	stdout = []string{filepath.Join(tree, "0.log"), filepath.Join(tree, "1.log")}
	apps = []string{filepath.Join(e.podDir, "app", "access.log"), filepath.Join(e.podDir, "app", "gc.log"), filepath.Join(e.podDir, "top.log")}
	sort.Strings(apps)
	return root, e.source, stdout, apps
}

// globRegexp turns a doublestar glob (what the filelog receiver, Vector and fluentd's in_tail use) into a regexp:
// '**' as a whole segment is any number of directories, '*' and '?' never cross '/'.
func globRegexp(glob string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i, seg := range strings.Split(glob, "/") {
		if i > 0 {
			b.WriteString("/")
		}
		if seg == "**" {
			b.WriteString("(?:[^/]+(?:/[^/]+)*)?")
			continue
		}
		for _, r := range seg {
			switch r {
			case '*':
				b.WriteString("[^/]*")
			case '?':
				b.WriteString("[^/]")
			default:
				b.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
	}
	return regexp.MustCompile(strings.ReplaceAll(b.String(), "/(?:[^/]+(?:/[^/]+)*)?/", "/(?:[^/]+/)*") + "$")
}

// matching lists the regular files below dirs that match an include glob and no exclude glob.
func matching(t *testing.T, dirs []string, include, exclude []string) []string {
	t.Helper()
	var out []string
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, de fs.DirEntry, err error) error {
			if err != nil || !de.Type().IsRegular() {
				return err
			}
			in := false
			for _, g := range include {
				in = in || globRegexp(g).MatchString(p)
			}
			for _, g := range exclude {
				in = in && !globRegexp(g).MatchString(p)
			}
			if in {
				out = append(out, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(out)
	return out
}

func readSnippet(t *testing.T, name, root, pods string) string {
	t.Helper()
	s := readFile(t, filepath.Join(snippetDir, name))
	s = strings.ReplaceAll(s, snippetRoot, root)
	return strings.ReplaceAll(s, snippetPods, pods)
}

func rel(root string, globs ...string) []string {
	var out []string
	for _, g := range globs {
		out = append(out, root+"/"+g)
	}
	return out
}

func assertFiles(t *testing.T, what string, got, want []string) {
	t.Helper()
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s reads\n  %s\nwant exactly\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// assertPathAttrs: re extracts the pod's namespace, name, uid (and container, where there is one) from each file.
func assertPathAttrs(t *testing.T, what, re string, files []string, root string) {
	t.Helper()
	r, err := regexp.Compile(re)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for _, f := range files {
		m := r.FindStringSubmatch(f)
		if m == nil {
			t.Errorf("%s does not match %s", what, f)
			continue
		}
		got := map[string]string{}
		for i, n := range r.SubexpNames() {
			if n != "" {
				got[n] = m[i]
			}
		}
		byRole := map[string]string{}
		for n, x := range got {
			byRole[groupRole(n)] = x
		}
		wantC := ""
		if filepath.Base(filepath.Dir(f)) == "app" {
			wantC = "app"
		}
		want := map[string]string{"namespace": testRef.Namespace, "pod": testRef.Name, "uid": testRef.UID, "container": wantC}
		for role, w := range want {
			if byRole[role] != w {
				t.Errorf("%s on %s: %s %q, want %q (groups %v)", what, f, role, byRole[role], w, got)
			}
		}
	}
}

// groupRole maps a capture group name of any snippet (namespace, k8s_namespace_name, pod_namespace, ...) to the
// attribute it fills.
func groupRole(name string) string {
	switch {
	case strings.Contains(name, "restart"):
		return "restart"
	case strings.Contains(name, "namespace"):
		return "namespace"
	case strings.Contains(name, "container"):
		return "container"
	case strings.HasSuffix(name, "uid") || strings.HasSuffix(name, "pod_id"):
		return "uid"
	case strings.Contains(name, "pod"):
		return "pod"
	}
	return name
}

func TestCollectorContractOnAKeeplogTree(t *testing.T) {
	root, _, stdout, apps := collectTree(t)
	assertFiles(t, "the stdout glob", matching(t, []string{root}, rel(root, api.CollectStdoutGlob), nil), stdout)
	assertFiles(t, "the apps globs", matching(t, []string{root}, rel(root, api.CollectAppsGlob),
		rel(root, api.CollectExcludeFiles, api.CollectExcludeDirs)), apps)
	for _, f := range stdout {
		if !containerOperatorPath.MatchString(f) {
			t.Errorf("the container operator's path rule does not match %s", f)
		}
	}
	assertPathAttrs(t, "the container operator's rule", containerOperatorPath.String(), stdout, root)
}

func TestCollectorSnippetOpenTelemetry(t *testing.T) {
	root, pods, stdout, apps := collectTree(t)
	var cfg struct {
		Receivers map[string]struct {
			Include         []string `json:"include"`
			Exclude         []string `json:"exclude"`
			FingerprintSize int      `json:"fingerprint_size"`
			Operators       []struct {
				Type  string `json:"type"`
				Regex string `json:"regex"`
			} `json:"operators"`
		} `json:"receivers"`
	}
	if err := yaml.Unmarshal([]byte(readSnippet(t, "otelcol-filelog.yaml", root, pods)), &cfg); err != nil {
		t.Fatal(err)
	}
	so, ap := cfg.Receivers["filelog/keeplog-stdout"], cfg.Receivers["filelog/keeplog-apps"]
	kubelet := filepath.Join(pods, testRef.DirName(), "app")
	assertFiles(t, "filelog/keeplog-stdout", matching(t, []string{root, pods}, so.Include, so.Exclude),
		append([]string{filepath.Join(kubelet, "0.log"), filepath.Join(kubelet, "1.log")}, stdout...))
	// The shortest line the runtime writes: a timestamp without fraction, the stream, the full-line tag, no message.
	shortest := len(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).Format(time.RFC3339Nano) + " stdout F \n")
	if so.FingerprintSize != api.CollectStdoutFingerprintSize || shortest != api.CollectStdoutFingerprintSize {
		t.Errorf("filelog/keeplog-stdout fingerprint_size %d, the contract's %d, the shortest CRI line %d bytes: want one value",
			so.FingerprintSize, api.CollectStdoutFingerprintSize, shortest)
	}
	if len(so.Operators) != 1 || so.Operators[0].Type != "container" {
		t.Errorf("filelog/keeplog-stdout operators %+v, want the container operator alone", so.Operators)
	}
	assertFiles(t, "filelog/keeplog-apps", matching(t, []string{root, pods}, ap.Include, ap.Exclude), apps)
	if len(ap.Operators) == 0 || ap.Operators[0].Type != "regex_parser" {
		t.Fatalf("filelog/keeplog-apps operators %+v, want a regex_parser first", ap.Operators)
	}
	assertPathAttrs(t, "filelog/keeplog-apps regex", ap.Operators[0].Regex, apps, root)
	if strings.Join(ap.Include, " ") != strings.Join(rel(root, api.CollectAppsGlob), " ") ||
		strings.Join(ap.Exclude, " ") != strings.Join(rel(root, api.CollectExcludeFiles, api.CollectExcludeDirs), " ") {
		t.Errorf("filelog/keeplog-apps globs differ from the contract: %v %v", ap.Include, ap.Exclude)
	}
}

func TestCollectorSnippetVector(t *testing.T) {
	root, pods, stdout, apps := collectTree(t)
	var cfg struct {
		Sources map[string]struct {
			Include []string `json:"include"`
			Exclude []string `json:"exclude"`
		} `json:"sources"`
		Transforms map[string]struct {
			Source string `json:"source"`
		} `json:"transforms"`
	}
	if err := yaml.Unmarshal([]byte(readSnippet(t, "vector.yaml", root, pods)), &cfg); err != nil {
		t.Fatal(err)
	}
	so, ap := cfg.Sources["keeplog_stdout"], cfg.Sources["keeplog_apps"]
	assertFiles(t, "keeplog_stdout", matching(t, []string{root, pods}, so.Include, so.Exclude), stdout)
	assertFiles(t, "keeplog_apps", matching(t, []string{root, pods}, ap.Include, ap.Exclude), apps)
	assertPathAttrs(t, "keeplog_stdout_parsed", lastRegex(t, cfg.Transforms["keeplog_stdout_parsed"].Source), stdout, root)
	assertPathAttrs(t, "keeplog_apps_parsed", lastRegex(t, cfg.Transforms["keeplog_apps_parsed"].Source), apps, root)
}

// lastRegex is the last r'...' literal of a VRL program (the path regex).
func lastRegex(t *testing.T, vrl string) string {
	t.Helper()
	all := regexp.MustCompile(`r'([^']*)'`).FindAllStringSubmatch(vrl, -1)
	if len(all) == 0 {
		t.Fatalf("no regex in %q", vrl)
	}
	return all[len(all)-1][1]
}

func TestCollectorSnippetFluentBit(t *testing.T) {
	root, pods, stdout, apps := collectTree(t)
	conf := readSnippet(t, "fluent-bit.conf", root, pods)
	paths := regexp.MustCompile(`(?m)^\s+Path\s+(\S+)$`).FindAllStringSubmatch(conf, -1)
	excl := regexp.MustCompile(`(?m)^\s+Exclude_Path\s+(\S+)$`).FindStringSubmatch(conf)
	if len(paths) != 2 || excl == nil {
		t.Fatalf("want two tail inputs and one Exclude_Path: %v %v", paths, excl)
	}
	assertFiles(t, "the stdout input", matching(t, []string{root, pods}, strings.Split(paths[0][1], ","), nil), stdout)
	assertFiles(t, "the apps input", matching(t, []string{root, pods}, strings.Split(paths[1][1], ","), strings.Split(excl[1], ",")), apps)
	res := regexp.MustCompile(`(?m)^#\s+Regex\s+(\S+)$`).FindAllStringSubmatch(conf, -1)
	if len(res) != 2 {
		t.Fatalf("want two path parsers, got %v", res)
	}
	assertPathAttrs(t, "keeplog-stdout-path", res[0][1], stdout, root)
	assertPathAttrs(t, "keeplog-app-path", res[1][1], apps, root)
}

func TestCollectorSnippetFluentd(t *testing.T) {
	root, pods, stdout, apps := collectTree(t)
	conf := readSnippet(t, "fluentd.conf", root, pods)
	paths := regexp.MustCompile(`(?m)^\s+path\s+(\S+)$`).FindAllStringSubmatch(conf, -1)
	excl := regexp.MustCompile(`(?m)^\s+exclude_path\s+\[(.*)\]$`).FindStringSubmatch(conf)
	if len(paths) != 2 || excl == nil {
		t.Fatalf("want two tail sources and one exclude_path: %v %v", paths, excl)
	}
	var exclude []string
	for _, e := range strings.Split(excl[1], ",") {
		exclude = append(exclude, strings.Trim(strings.TrimSpace(e), `"`))
	}
	assertFiles(t, "the stdout source", matching(t, []string{root, pods}, []string{paths[0][1]}, nil), stdout)
	assertFiles(t, "the apps source", matching(t, []string{root, pods}, []string{paths[1][1]}, exclude), apps)
	res := regexp.MustCompile(`%r\{([^}]*)\}`).FindAllStringSubmatch(conf, -1)
	if len(res) != 2 {
		t.Fatalf("want two path regexes, got %v", res)
	}
	assertPathAttrs(t, "the stdout filter", res[0][1], stdout, root)
	assertPathAttrs(t, "the apps filter", res[1][1], apps, root)
}
