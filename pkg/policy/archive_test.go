package policy

import (
	"strings"
	"testing"

	"github.com/keeplog/keeplog/pkg/api"
)

func TestArchivePolicyMatches(t *testing.T) {
	def := ArchivePolicy{}
	for _, tc := range []struct {
		p    ArchivePolicy
		rel  string
		want bool
	}{
		{def, "app/java_pid12.hprof", true},
		{def, "app/core", true},
		{def, "app/core.4711", true},
		{def, "app/hs_err_pid1.log", true},
		{def, "app/sub/deep.hprof", true},
		{def, "app/app.log", false},
		{def, "app/corefile", false},
		{def, "app/x.hprof.tmp", false},
		{def, api.LegacyArchiveStatusFile, false},
		{ArchivePolicy{Patterns: []string{"*"}}, api.LegacyArchiveStatusFile, false},
		{ArchivePolicy{Patterns: []string{"*"}}, ".tmp-0123456789ab-" + api.LegacyArchiveStatusFile, false},
		{ArchivePolicy{Patterns: []string{"*"}}, ".tmp-0123456789ab-other.json", true},
		{ArchivePolicy{Patterns: []string{"dumps/*.bin"}}, "app/dumps/a.bin", true},
		{ArchivePolicy{Patterns: []string{"dumps/*.bin"}}, "app/a.bin", false},
		{ArchivePolicy{Patterns: []string{"*.bin"}}, "app/x/a.bin", true},
		{ArchivePolicy{Off: true}, "app/java_pid12.hprof", false},
		{ArchivePolicy{Off: true, Patterns: []string{"*"}}, "app/a.bin", false},
	} {
		if got := tc.p.Matches(tc.rel); got != tc.want {
			t.Errorf("%v.Matches(%q) = %v, want %v", tc.p.Patterns, tc.rel, got, tc.want)
		}
	}
	// Malformed patterns are refused where they come in: the StorageClass parameter (and the annotation).
	for _, bad := range []string{"[", "/abs", "../x"} {
		if err := ValidateParameters(map[string]string{api.ParamArchivePatterns: bad}); err == nil ||
			!strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("archivePatterns %q: %v", bad, err)
		}
	}
	if err := ValidateParameters(map[string]string{api.ParamArchivePatterns: " , "}); err == nil {
		t.Error("archivePatterns without a pattern: accepted")
	}
}
