package arch

import (
	"slices"
	"strings"
	"testing"
)

// apiGroups are the only k8s.io/api packages bin/keeplog links: the groups it talks to (pkg/kube's scheme).
var apiGroups = []string{"k8s.io/api/apps/v1", "k8s.io/api/authentication/v1", "k8s.io/api/authorization/v1",
	"k8s.io/api/batch/v1", "k8s.io/api/coordination/v1", "k8s.io/api/core/v1"}

// fullClientset are client-go packages that register or link every API group: the typed clients' scheme, the
// clientset, the informers and leaderelection (which imports both).
var fullClientset = []string{"k8s.io/client-go/kubernetes", "k8s.io/client-go/kubernetes/scheme",
	"k8s.io/client-go/informers", "k8s.io/client-go/tools/leaderelection"}

// TestNodePluginLinksOnlyTheAPIGroupsItUses: client-go's typed clients import kubernetes/scheme, which registers all
// 55 groups of k8s.io/api (10 MB of bin/keeplog and heap at start); pkg/kube builds keeplog's clients on a scheme of
// its six groups. A new import of a typed client, the clientset, its scheme, the informers or leaderelection anywhere
// in cmd/keeplog's dependencies fails here.
func TestNodePluginLinksOnlyTheAPIGroupsItUses(t *testing.T) {
	var groups []string
	linked := map[string]bool{}
	for _, d := range deps(t, "cmd/keeplog") {
		linked[d] = true
		if strings.HasPrefix(d, "k8s.io/api/") {
			groups = append(groups, d)
		}
	}
	if !linked["k8s.io/client-go/rest"] {
		t.Fatal("go list -deps cmd/keeplog does not list client-go/rest: the listing is broken")
	}
	slices.Sort(groups)
	if !slices.Equal(groups, apiGroups) {
		t.Errorf("bin/keeplog links k8s.io/api packages\n%s\nwant only\n%s", strings.Join(groups, "\n"), strings.Join(apiGroups, "\n"))
	}
	for _, p := range fullClientset {
		if linked[p] {
			t.Errorf("bin/keeplog links %s, which brings every API group: use pkg/kube's clients", p)
		}
	}
	for d := range linked {
		if strings.HasPrefix(d, "k8s.io/client-go/kubernetes/typed/") {
			t.Errorf("bin/keeplog links the typed client %s (it imports client-go's kubernetes/scheme): use pkg/kube's clients", d)
		}
	}
}
