package chart

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// proposedMetrics may be used by the example alerts before the code that defines them is committed: the garbage
// collector's (issue 5) view of the root's filesystem. Once defined, an entry here is harmless.
var proposedMetrics = []string{
	"keeplog_gc_disk_used_ratio", // gauge: share of the root's filesystem in use, 0..1
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

var metricName = regexp.MustCompile(`\bkeeplog_[a-z0-9_]+`)

// definedMetrics are the keeplog_* names string literals in the non-test Go code register.
func definedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	lit := regexp.MustCompile(`"(keeplog_[a-z0-9_]+)"`)
	out := map[string]bool{}
	for _, dir := range []string{"pkg", "cmd"} {
		err := filepath.WalkDir(filepath.Join(repo, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range lit.FindAllStringSubmatch(string(data), -1) {
				out[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// The example alerts parse, each has a severity and a summary, and every metric they use exists in the code (or is
// listed as proposed above).
func TestPrometheusRules(t *testing.T) {
	path := filepath.Join(repo, "charts", "keeplog", "files", "prometheus-rules.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(data, &rf); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defined := definedMetrics(t)
	if !defined["keeplog_archiver_uploads_total"] {
		t.Fatalf("found no metric definitions in the code (%d names): the search is broken", len(defined))
	}
	seen, alerts := map[string]bool{}, map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || alerts[r.Alert] {
				t.Errorf("group %s: rule %q without a name or expression, or a duplicate", g.Name, r.Alert)
			}
			alerts[r.Alert] = true
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: no summary or description", r.Alert)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
				}
			}
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") || strings.Count(r.Expr, "[") != strings.Count(r.Expr, "]") {
				t.Errorf("%s: unbalanced brackets in %q", r.Alert, r.Expr)
			}
			for _, m := range metricName.FindAllString(r.Expr, -1) {
				seen[m] = true
				base := m
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(m, suffix); ok && defined[b] {
						base = b
					}
				}
				if !defined[base] && !slices.Contains(proposedMetrics, m) {
					t.Errorf("%s uses %s, which no code defines", r.Alert, m)
				}
			}
		}
	}
	for _, want := range []string{"KeeplogUploadFailed", "KeeplogDiskPressure"} {
		if !alerts[want] {
			t.Errorf("no alert %s (upload failures and disk pressure are the ones docs/metrics.md promises)", want)
		}
	}
	for _, m := range proposedMetrics {
		if !seen[m] {
			t.Errorf("proposedMetrics lists %s, which no alert uses", m)
		}
	}
}
