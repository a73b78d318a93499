package chart

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/keeplog/keeplog/pkg/api"
)

// optionalKinds are what the monitoring, OpenShift and test values add; none is rendered by default.
func TestMonitoringOpenShiftAndTestObjectsAreOffByDefault(t *testing.T) {
	r := render(t, Options{})
	if len(r.custom) != 0 || len(r.configMaps) != 0 || len(r.pods) != 0 {
		t.Errorf("default render has %v, %d ConfigMaps, %d test pods: all must be off by default", keys(r.custom), len(r.configMaps), len(r.pods))
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The ServiceMonitor selects the headless metrics Service, which selects the plugin pods on their metrics port;
// with metrics.auth=kubernetes it sends Prometheus's ServiceAccount token, or the bearerTokenSecret's.
func TestServiceMonitor(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want string // bearerTokenFile, authorization or none
	}{
		{"own token", []string{"monitoring.serviceMonitor.enabled=true"}, "bearerTokenFile"},
		{"token secret", []string{"monitoring.serviceMonitor.enabled=true", "monitoring.serviceMonitor.bearerTokenSecret.name=scrape"}, "authorization"},
		{"open metrics", []string{"monitoring.serviceMonitor.enabled=true", "metrics.auth=none"}, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, Options{Set: tc.set})
			sm := r.custom["ServiceMonitor"]
			if sm == nil || len(r.services) != 1 {
				t.Fatalf("ServiceMonitor %v, Services %d", sm, len(r.services))
			}
			svc := r.services[0]
			if svc.Spec.ClusterIP != corev1.ClusterIPNone || !reflect.DeepEqual(svc.Spec.Selector, r.ds.Spec.Selector.MatchLabels) ||
				svc.Spec.Ports[0].TargetPort.StrVal != "http-metrics" {
				t.Errorf("metrics Service %+v: want headless, selecting the DaemonSet's pods, on http-metrics", svc.Spec)
			}
			sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
			for k, v := range sel {
				if svc.Labels[k] != v {
					t.Errorf("ServiceMonitor selector %v does not select Service labels %v", sel, svc.Labels)
				}
			}
			eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
			if len(eps) != 1 {
				t.Fatalf("endpoints %v", eps)
			}
			ep := eps[0].(map[string]any)
			if ep["port"] != "http-metrics" || ep["path"] != "/metrics" {
				t.Errorf("endpoint %v", ep)
			}
			_, file := ep["bearerTokenFile"]
			_, authz := ep["authorization"]
			got := map[[2]bool]string{{true, false}: "bearerTokenFile", {false, true}: "authorization", {false, false}: "none"}[[2]bool{file, authz}]
			if got != tc.want {
				t.Errorf("endpoint authentication %q, want %q: %v", got, tc.want, ep)
			}
		})
	}
}

// The PrometheusRule has exactly the rules of files/prometheus-rules.yaml, each alert with a runbook_url pointing at
// its own section of docs/runbooks.md.
func TestPrometheusRuleRunbooks(t *testing.T) {
	r := render(t, Options{Set: []string{"monitoring.prometheusRule.enabled=true"}})
	pr := r.custom["PrometheusRule"]
	if pr == nil {
		t.Fatal("no PrometheusRule")
	}
	var rendered, file ruleFile
	spec, _ := json.Marshal(pr.Object["spec"])
	if err := json.Unmarshal(spec, &rendered); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(repo, "charts", "keeplog", "files", "prometheus-rules.yaml"))
	if err != nil || yaml.Unmarshal(data, &file) != nil {
		t.Fatalf("rules file: %v", err)
	}
	runbooks, err := os.ReadFile(filepath.Join(repo, "docs", "runbooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for gi, g := range file.Groups {
		for ri, want := range g.Rules {
			got := rendered.Groups[gi].Rules[ri]
			if got.Alert != want.Alert || got.Expr != want.Expr || got.For != want.For || got.Annotations["summary"] != want.Annotations["summary"] {
				t.Errorf("rule %s differs from the file's %s", got.Alert, want.Alert)
			}
			url := "https://github.com/keeplog/keeplog/blob/main/docs/runbooks.md#" + strings.ToLower(want.Alert)
			if got.Annotations["runbook_url"] != url {
				t.Errorf("%s runbook_url %q, want %q", want.Alert, got.Annotations["runbook_url"], url)
			}
			if !slices.Contains(strings.Split(string(runbooks), "\n"), "## "+want.Alert) {
				t.Errorf("docs/runbooks.md has no section \"## %s\" (the anchor #%s)", want.Alert, strings.ToLower(want.Alert))
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no alerts")
	}
}

// The dashboard ConfigMap carries the Grafana sidecar's label, its JSON parses, every query uses metrics keeplog
// defines, and it covers what operators watch.
func TestDashboard(t *testing.T) {
	r := render(t, Options{Set: []string{"monitoring.dashboard.enabled=true"}})
	if len(r.configMaps) != 1 || r.configMaps[0].Labels["grafana_dashboard"] != "1" {
		t.Fatalf("dashboard ConfigMaps %v: want one labelled grafana_dashboard: \"1\"", r.configMaps)
	}
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(r.configMaps[0].Data["keeplog.json"]), &d); err != nil || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard JSON: %v (uid %q, %d panels)", err, d.UID, len(d.Panels))
	}
	defined := definedMetrics(t)
	used := map[string]bool{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				used[m] = true
				if !defined[m] {
					t.Errorf("panel %q uses %s, which keeplog does not define", p.Title, m)
				}
			}
		}
	}
	for _, m := range []string{api.MetricGCRetainedBytes, api.MetricArchiverQueueDepth, api.MetricArchiverUploadedBytesTotal,
		api.MetricArchiverUploadsTotal, api.MetricGCDeletionsTotal, api.MetricDumpDecisionsTotal, api.MetricLoopLastProgressSeconds} {
		if !used[m] {
			t.Errorf("the dashboard does not show %s", m)
		}
	}
}

// The SecurityContextConstraints allows exactly what the DaemonSet's pod uses: each host namespace and privilege the
// pod asks for is allowed, nothing it does not ask for (host IPC, added capabilities), and every volume type of the
// pod (plus projected, the ServiceAccount token) and no other; the plugin's ServiceAccount may use it.
func TestSecurityContextConstraints(t *testing.T) {
	r := render(t, Options{ValuesFiles: []string{allValues()}, Set: []string{"hostNetwork=true", "hostPID=true"}})
	scc := r.custom["SecurityContextConstraints"]
	if scc == nil {
		t.Fatal("no SecurityContextConstraints")
	}
	spec := r.ds.Spec.Template.Spec
	privileged := false
	for _, c := range spec.Containers {
		privileged = privileged || (c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged)
	}
	for field, want := range map[string]bool{"allowPrivilegedContainer": privileged, "allowHostNetwork": spec.HostNetwork,
		"allowHostPorts": spec.HostNetwork, "allowHostPID": spec.HostPID, "allowHostIPC": spec.HostIPC,
		"allowHostDirVolumePlugin": true} {
		if got, _, _ := unstructured.NestedBool(scc.Object, field); got != want {
			t.Errorf("%s: %v, want %v (the pod's needs)", field, got, want)
		}
	}
	if caps, _, _ := unstructured.NestedStringSlice(scc.Object, "allowedCapabilities"); len(caps) != 0 {
		t.Errorf("allowedCapabilities %v: the pod adds none", caps)
	}
	want := map[string]bool{"projected": true}
	for _, v := range spec.Volumes {
		switch {
		case v.HostPath != nil:
			want["hostPath"] = true
		case v.Secret != nil:
			want["secret"] = true
		case v.EmptyDir != nil:
			want["emptyDir"] = true
		default:
			t.Errorf("volume %s of a type the SCC test does not know", v.Name)
		}
	}
	got, _, _ := unstructured.NestedStringSlice(scc.Object, "volumes")
	slices.Sort(got)
	if wantList := keys(want); !slices.Equal(got, wantList) {
		t.Errorf("SCC volumes %v, want exactly %v", got, wantList)
	}
	cluster, _ := r.grants(t)
	use := false
	for _, rule := range cluster {
		use = use || (slices.Contains(rule.APIGroups, "security.openshift.io") && slices.Contains(rule.Resources, "securitycontextconstraints") &&
			slices.Equal(rule.ResourceNames, []string{scc.GetName()}) && slices.Equal(rule.Verbs, []string{"use"}))
	}
	if !use {
		t.Errorf("the plugin's ServiceAccount may not use SCC %s", scc.GetName())
	}
}

// The helm test pod is a test hook running `keeplog check` for this release's DaemonSet and port, as a
// ServiceAccount that may read the DaemonSet and its pods and is bound to the metrics reader; bin/keeplog accepts
// its arguments.
func TestHelmTestPod(t *testing.T) {
	r := render(t, Options{Set: []string{"tests.enabled=true", "metrics.port=19000"}})
	if len(r.pods) != 1 {
		t.Fatalf("%d test pods", len(r.pods))
	}
	p := r.pods[0]
	if p.Annotations["helm.sh/hook"] != "test" || p.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("test pod annotations %v restartPolicy %s", p.Annotations, p.Spec.RestartPolicy)
	}
	sel, _ := metav1.LabelSelectorAsSelector(r.ds.Spec.Selector)
	if sel.Matches(labels.Set(p.Labels)) {
		t.Errorf("the test pod's labels %v match the DaemonSet's selector: the DaemonSet controller adopts and deletes it", p.Labels)
	}
	c := p.Spec.Containers[0]
	wantArgs := []string{"check", "--namespace=keeplog", "--daemonset=" + r.ds.Name, "--port=19000", "--with-token=true", "--timeout=2m"}
	if c.Image != r.container(t, "keeplog").Image || !slices.Equal(c.Args, wantArgs) {
		t.Errorf("test container %s %v, want the plugin's image with %v", c.Image, c.Args, wantArgs)
	}
	// The arguments parse: with a kubeconfig that does not exist the check fails on it, not on a flag.
	out, err := exec.Command(keeplogBinary(t), append(slices.Clone(c.Args), "--kubeconfig=/nonexistent/kubeconfig")...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "/nonexistent/kubeconfig") || strings.Contains(string(out), "flag provided but not defined") {
		t.Errorf("keeplog %s: %v\n%s", strings.Join(c.Args, " "), err, out)
	}
	bound := false
	for _, b := range r.clusterBinding {
		for _, s := range b.Subjects {
			bound = bound || (s.Name == p.Spec.ServiceAccountName && b.RoleRef.Name == r.ds.Name+"-metrics-reader")
		}
	}
	if !bound {
		t.Errorf("test ServiceAccount %s is not bound to %s-metrics-reader", p.Spec.ServiceAccountName, r.ds.Name)
	}
	role := r.roles[p.Spec.ServiceAccountName]
	if role == nil || len(role.Rules) != 2 {
		t.Errorf("test Role %+v: want get on the DaemonSet and list on pods", role)
	}
}

// restrictedV2Refusals is what OpenShift's restricted-v2 SCC (the one a pod whose ServiceAccount may use no other
// gets) constrains, applied to pod: a UID, if the pod asks for one, inside the namespace's range (uidMin-uidMax, the
// openshift.io/sa.scc.uid-range annotation), no host namespaces or ports, no privileged or escalating container, no
// capability but NET_BIND_SERVICE, only its volume types, the runtime's default seccomp profile. The SCC admission
// plugin itself runs only on OpenShift, which this machine has not; these are its restricted-v2 fields.
func restrictedV2Refusals(p *corev1.Pod, uidMin, uidMax int64) []string {
	var refused []string
	uid := func(where string, u *int64) {
		if u != nil && (*u < uidMin || *u > uidMax) {
			refused = append(refused, fmt.Sprintf("%s runAsUser %d outside [%d, %d]", where, *u, uidMin, uidMax))
		}
	}
	seccomp := func(where string, s *corev1.SeccompProfile) {
		if s != nil && s.Type != corev1.SeccompProfileTypeRuntimeDefault {
			refused = append(refused, where+" seccomp profile "+string(s.Type))
		}
	}
	s := p.Spec
	if s.HostNetwork || s.HostPID || s.HostIPC {
		refused = append(refused, "host namespaces")
	}
	if s.SecurityContext != nil {
		uid("pod", s.SecurityContext.RunAsUser)
		seccomp("pod", s.SecurityContext.SeccompProfile)
	}
	for _, v := range s.Volumes {
		if v.ConfigMap == nil && v.CSI == nil && v.DownwardAPI == nil && v.EmptyDir == nil && v.Ephemeral == nil &&
			v.PersistentVolumeClaim == nil && v.Projected == nil && v.Secret == nil {
			refused = append(refused, "volume "+v.Name+" of a type restricted-v2 does not allow")
		}
	}
	for _, c := range append(slices.Clone(s.InitContainers), s.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			continue // restricted-v2 fills in its defaults
		}
		uid("container "+c.Name, sc.RunAsUser)
		seccomp("container "+c.Name, sc.SeccompProfile)
		if (sc.Privileged != nil && *sc.Privileged) || (sc.AllowPrivilegeEscalation != nil && *sc.AllowPrivilegeEscalation) {
			refused = append(refused, "container "+c.Name+" privileged or escalating")
		}
		if sc.Capabilities != nil {
			for _, a := range sc.Capabilities.Add {
				if a != "NET_BIND_SERVICE" {
					refused = append(refused, "container "+c.Name+" adds "+string(a))
				}
			}
		}
		for _, port := range c.Ports {
			if port.HostPort != 0 {
				refused = append(refused, "container "+c.Name+" host port")
			}
		}
	}
	return refused
}

// Under OpenShift (openshift.scc.enabled) the helm test pod asks for no UID or GID, so restricted-v2 gives it one
// from the namespace's range; it stays non-root and unprivileged. Elsewhere it runs as 65534 (nobody), which
// restricted-v2 would refuse.
func TestHelmTestPodUnderRestrictedV2(t *testing.T) {
	const uidMin, uidMax = 1000660000, 1000669999 // a namespace's openshift.io/sa.scc.uid-range 1000660000/10000
	r := render(t, Options{Set: []string{"tests.enabled=true", "openshift.scc.enabled=true"}})
	if len(r.pods) != 1 {
		t.Fatalf("%d test pods", len(r.pods))
	}
	p := r.pods[0]
	sc := p.Spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser != nil || sc.RunAsGroup != nil {
		t.Errorf("OpenShift test pod securityContext %+v: want runAsNonRoot and no runAsUser/runAsGroup", sc)
	}
	if refused := restrictedV2Refusals(p, uidMin, uidMax); len(refused) != 0 {
		t.Errorf("restricted-v2 refuses the OpenShift test pod: %v", refused)
	}
	r = render(t, Options{Set: []string{"tests.enabled=true"}})
	if sc := r.pods[0].Spec.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65534 || sc.RunAsGroup == nil || *sc.RunAsGroup != 65534 {
		t.Errorf("test pod securityContext %+v: want UID and GID 65534 off OpenShift", sc)
	}
	if refused := restrictedV2Refusals(r.pods[0], uidMin, uidMax); len(refused) != 1 {
		t.Errorf("restricted-v2 on the non-OpenShift test pod: %v, want exactly its UID refused", refused)
	}
	r = render(t, Options{Set: []string{"tests.enabled=true", "openshift.scc.enabled=true", "tests.hostNetwork=true"}})
	if refused := restrictedV2Refusals(r.pods[0], uidMin, uidMax); len(refused) != 1 {
		t.Errorf("restricted-v2 on a host-network test pod: %v, want host namespaces refused", refused)
	}
}
