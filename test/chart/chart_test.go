package chart

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/test/e2e/lab"
)

var repo, helm string

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	var err error
	if repo, err = RepoRoot(); err == nil {
		helm, err = Helm(ctx, repo)
	}
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart tests:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func allValues() string { return filepath.Join(repo, "test", "chart", "testdata", "all-values.yaml") }

// rendered is one `helm template`, decoded and indexed.
type rendered struct {
	yaml           string
	objs           []runtime.Object
	ds             *appsv1.DaemonSet
	driver         *storagev1.CSIDriver
	classes        map[string]*storagev1.StorageClass
	sa             *corev1.ServiceAccount
	clusterRoles   map[string]*rbacv1.ClusterRole
	roles          map[string]*rbacv1.Role
	clusterBinding []*rbacv1.ClusterRoleBinding
	roleBindings   []*rbacv1.RoleBinding
	services       []*corev1.Service
	configMaps     []*corev1.ConfigMap
	pods           []*corev1.Pod // helm test hooks
	deployments    []*appsv1.Deployment
	secrets        []*corev1.Secret
	custom         map[string]*unstructured.Unstructured // by kind: ServiceMonitor, PrometheusRule, SecurityContextConstraints
}

func render(t *testing.T, o Options) *rendered {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := Render(ctx, helm, repo, o)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{yaml: out, objs: objs, classes: map[string]*storagev1.StorageClass{},
		clusterRoles: map[string]*rbacv1.ClusterRole{}, roles: map[string]*rbacv1.Role{}, custom: map[string]*unstructured.Unstructured{}}
	for _, obj := range objs {
		switch o := obj.(type) {
		case *appsv1.DaemonSet:
			if r.ds != nil {
				t.Fatalf("two DaemonSets: %s and %s", r.ds.Name, o.Name)
			}
			r.ds = o
		case *storagev1.CSIDriver:
			if r.driver != nil {
				t.Fatalf("two CSIDrivers")
			}
			r.driver = o
		case *storagev1.StorageClass:
			r.classes[o.Name] = o
		case *corev1.ServiceAccount:
			if o.Labels["app.kubernetes.io/component"] != "test" { // the helm test's own
				r.sa = o
			}
		case *rbacv1.ClusterRole:
			r.clusterRoles[o.Name] = o
		case *rbacv1.Role:
			r.roles[o.Name] = o
		case *rbacv1.ClusterRoleBinding:
			r.clusterBinding = append(r.clusterBinding, o)
		case *rbacv1.RoleBinding:
			r.roleBindings = append(r.roleBindings, o)
		case *corev1.Service:
			r.services = append(r.services, o)
		case *corev1.ConfigMap:
			r.configMaps = append(r.configMaps, o)
		case *corev1.Pod:
			r.pods = append(r.pods, o)
		case *appsv1.Deployment:
			r.deployments = append(r.deployments, o)
		case *corev1.Secret:
			r.secrets = append(r.secrets, o)
		case *unstructured.Unstructured:
			if r.custom[o.GetKind()] != nil {
				t.Fatalf("two %s objects", o.GetKind())
			}
			r.custom[o.GetKind()] = o
		default:
			t.Fatalf("unexpected object %T in the render", obj)
		}
	}
	if r.ds == nil {
		t.Fatal("no DaemonSet rendered")
	}
	return r
}

func TestDefaults(t *testing.T) {
	r := render(t, Options{})

	// The CSIDriver docs/install.md promises.
	d := r.driver
	if d == nil {
		t.Fatal("no CSIDriver")
	}
	if d.Name != api.DriverName || d.Spec.PodInfoOnMount == nil || !*d.Spec.PodInfoOnMount ||
		d.Spec.AttachRequired == nil || *d.Spec.AttachRequired ||
		d.Spec.FSGroupPolicy == nil || *d.Spec.FSGroupPolicy != storagev1.NoneFSGroupPolicy ||
		d.Spec.StorageCapacity == nil || !*d.Spec.StorageCapacity ||
		!reflect.DeepEqual(d.Spec.VolumeLifecycleModes, []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent, storagev1.VolumeLifecycleEphemeral}) {
		t.Errorf("CSIDriver %s spec %+v: want podInfoOnMount, no attach, fsGroupPolicy None, storageCapacity, Persistent+Ephemeral", d.Name, d.Spec)
	}

	sc := r.classes["keeplog"]
	if len(r.classes) != 1 || sc == nil {
		t.Fatalf("StorageClasses %v, want exactly keeplog", r.classes)
	}
	if sc.Provisioner != d.Name || sc.ReclaimPolicy == nil || *sc.ReclaimPolicy != corev1.PersistentVolumeReclaimRetain ||
		sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer ||
		len(sc.Parameters) != 0 || sc.Annotations["storageclass.kubernetes.io/is-default-class"] != "" {
		t.Errorf("StorageClass %+v: want provisioner %s, Retain, WaitForFirstConsumer, no parameters, not default", sc, d.Name)
	}

	ds := r.ds
	spec := ds.Spec.Template.Spec
	if ds.Namespace != "keeplog" {
		t.Errorf("DaemonSet namespace %q", ds.Namespace)
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", spec.PriorityClassName)
	}
	tolerateAll := false
	for _, tol := range spec.Tolerations {
		if tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == "" {
			tolerateAll = true
		}
	}
	if !tolerateAll {
		t.Errorf("tolerations %+v do not tolerate every taint (control-plane nodes)", spec.Tolerations)
	}
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet || !spec.HostPID {
		t.Errorf("hostNetwork %v dnsPolicy %q hostPID %v: want host network with ClusterFirstWithHostNet and host PID", spec.HostNetwork, spec.DNSPolicy, spec.HostPID)
	}
	if r.sa == nil || spec.ServiceAccountName != r.sa.Name || r.sa.Namespace != ds.Namespace {
		t.Errorf("serviceAccountName %q, ServiceAccount %+v", spec.ServiceAccountName, r.sa)
	}
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType {
		t.Errorf("updateStrategy %+v", ds.Spec.UpdateStrategy)
	}

	k := r.container(t, "keeplog")
	if k.SecurityContext == nil || k.SecurityContext.Privileged == nil || !*k.SecurityContext.Privileged {
		t.Error("keeplog container is not privileged (it bind-mounts into kubelet's directories)")
	}
	f := wantFlags(t, k, map[string]string{
		"endpoint":                           "unix:///var/lib/kubelet/plugins/keeplog.csi.io/csi.sock",
		"node-id":                            "$(NODE_NAME)",
		"driver-name":                        api.DriverName,
		"root":                               "/var/log/keeplog",
		"pod-logs-dir":                       "/var/log/pods",
		"stdout-grace":                       "false",
		"kubelet-registration-dir":           "/var/lib/kubelet/plugins_registry",
		"kubelet-endpoint":                   "/var/lib/kubelet/plugins/keeplog.csi.io/csi.sock",
		"http-address":                       ":9808",
		"metrics-auth":                       "kubernetes",
		"dump-webhook-allow-unauthenticated": "false",
		"log-format":                         "json",
		"keep-env-values":                    "false",
		"cgroup-root":                        "/host/sys/fs/cgroup",
		"dump-host-network-address":          "127.0.0.1",
		"dump-webhook":                       "false",
		"kubelet-root-dir":                   "/var/lib/kubelet",
		"runtime-dir":                        "/proc/1/root/var/lib/containerd",
	})
	for name := range f {
		if strings.HasPrefix(name, "disk-") {
			t.Errorf("--%s is set by default: keeplog's own default follows whether the root shares kubelet's filesystem", name)
		}
	}
	// The runtime's directory is only stat'ed, through PID 1's root (hostPID): never mounted, so none of its mounts
	// is held and no propagation is needed (a HostToContainer mount of it failed in the lab, whose / is private).
	for _, v := range r.ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil && strings.HasPrefix(v.HostPath.Path, "/var/lib/containerd") {
			t.Errorf("volume %s mounts the runtime's directory %s", v.Name, v.HostPath.Path)
		}
	}
	for name := range f {
		if strings.HasPrefix(name, "archive-") || name == "kubeconfig" || name == "namespace" {
			t.Errorf("--%s is set by default (archiving is off, keeplog uses the in-cluster configuration and POD_NAMESPACE)", name)
		}
	}
	envFieldRef(t, k, "NODE_NAME", "spec.nodeName")
	envFieldRef(t, k, "POD_NAMESPACE", "metadata.namespace")
	if _, ok := envValue(k, "KUBERNETES_SERVICE_HOST"); ok {
		t.Error("KUBERNETES_SERVICE_HOST overridden by default")
	}

	// kubelet's directory: Bidirectional, the same path inside, and the socket and registration dir are inside it.
	km := mountOf(t, k, "kubelet-dir")
	kv := r.volume(t, "kubelet-dir")
	if km.MountPropagation == nil || *km.MountPropagation != corev1.MountPropagationBidirectional {
		t.Errorf("kubelet-dir mount propagation %v, want Bidirectional", km.MountPropagation)
	}
	if kv.HostPath == nil || kv.HostPath.Path != "/var/lib/kubelet" || km.MountPath != "/var/lib/kubelet" {
		t.Errorf("kubelet-dir %+v mounted at %s", kv.VolumeSource, km.MountPath)
	}
	sock := socketPath(t, f["endpoint"])
	for _, p := range []string{sock, f["kubelet-registration-dir"]} {
		if !strings.HasPrefix(p, km.MountPath+"/") {
			t.Errorf("%s is not inside the kubelet-dir mount %s", p, km.MountPath)
		}
	}
	for _, m := range k.VolumeMounts {
		if m.Name != "kubelet-dir" && m.MountPropagation != nil && *m.MountPropagation != corev1.MountPropagationNone {
			t.Errorf("mount %s has propagation %s: only kubelet's directory needs it", m.Name, *m.MountPropagation)
		}
	}
	// The root and kubelet's pod logs: hostPaths at the same path inside, the logs read-only.
	for vol, flag := range map[string]string{"root": "root", "pod-logs": "pod-logs-dir"} {
		v, m := r.volume(t, vol), mountOf(t, k, vol)
		if v.HostPath == nil || v.HostPath.Path != f[flag] || m.MountPath != f[flag] {
			t.Errorf("volume %s %+v mounted at %s, want hostPath %s at the same path (--%s)", vol, v.VolumeSource, m.MountPath, f[flag], flag)
		}
		if v.HostPath != nil && (v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectoryOrCreate) {
			t.Errorf("volume %s hostPath type %v, want DirectoryOrCreate", vol, v.HostPath.Type)
		}
	}
	// The node's cgroups (heap dumps read containers' memory there), read-only, where --cgroup-root points.
	if v, m := r.volume(t, "cgroup"), mountOf(t, k, "cgroup"); v.HostPath == nil || v.HostPath.Path != "/sys/fs/cgroup" ||
		m.MountPath != f["cgroup-root"] || !m.ReadOnly {
		t.Errorf("cgroup volume %+v mounted at %s (read-only %v), want the node's /sys/fs/cgroup read-only at --cgroup-root", v.VolumeSource, m.MountPath, m.ReadOnly)
	}
	if len(r.services) != 0 {
		t.Errorf("a Service is rendered without the dump webhook: %v", r.services)
	}
	if _, ok := f["dump-webhook-token-file"]; ok {
		t.Error("--dump-webhook-token-file without heapDumps.webhook.tokenSecret")
	}
	if !mountOf(t, k, "pod-logs").ReadOnly {
		t.Error("kubelet's pod logs are mounted writable")
	}
	if mountOf(t, k, "root").ReadOnly {
		t.Error("the root is mounted read-only")
	}

	// /healthz on the metrics port.
	lp := k.LivenessProbe
	if lp == nil || lp.HTTPGet == nil || lp.HTTPGet.Path != "/healthz" || lp.HTTPGet.Port.StrVal != "http-metrics" {
		t.Fatalf("liveness probe %+v, want GET /healthz on http-metrics", lp)
	}
	if len(k.Ports) != 1 || k.Ports[0].Name != "http-metrics" || fmt.Sprintf(":%d", k.Ports[0].ContainerPort) != f["http-address"] {
		t.Errorf("ports %+v do not match --http-address=%s", k.Ports, f["http-address"])
	}
	ann := ds.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ":"+ann["prometheus.io/port"] != f["http-address"] || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations %v", ann)
	}

	// csi-provisioner: node deployment, pod metadata, capacity owned by the DaemonSet, the same socket.
	p := r.container(t, "csi-provisioner")
	wantFlags(t, p, map[string]string{
		"csi-address": "/csi/csi.sock", "node-deployment": "true", "extra-create-metadata": "true",
		"leader-election": "false", "enable-capacity": "true", "capacity-ownerref-level": "1",
	})
	envFieldRef(t, p, "NODE_NAME", "spec.nodeName")
	envFieldRef(t, p, "NAMESPACE", "metadata.namespace")
	envFieldRef(t, p, "POD_NAME", "metadata.name")
	sv, sm := r.volume(t, "socket-dir"), mountOf(t, p, "socket-dir")
	if sv.HostPath == nil || sv.HostPath.Path != filepath.Dir(sock) || sm.MountPath != "/csi" {
		t.Errorf("socket-dir %+v at %s: want hostPath %s at /csi", sv.VolumeSource, sm.MountPath, filepath.Dir(sock))
	}
	if p.SecurityContext == nil || p.SecurityContext.Privileged != nil && *p.SecurityContext.Privileged {
		t.Error("csi-provisioner runs privileged")
	}
	if img := p.Image; !strings.HasSuffix(img, ":"+lab.ProvisionerVersion) {
		t.Errorf("csi-provisioner image %s is not the version the e2e tests (%s)", img, lab.ProvisionerVersion)
	}
	if r.hasContainer("node-driver-registrar") {
		t.Error("node-driver-registrar rendered although keeplog registers itself")
	}
}

// rbacRule is one permission: verb on group/resource.
type rbacRule struct{ group, resource, verb string }

func (p rbacRule) String() string { return fmt.Sprintf("%s %s/%s", p.verb, p.group, p.resource) }

func allows(rules []rbacv1.PolicyRule, p rbacRule) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, p.group) && slices.Contains(r.Resources, p.resource) && slices.Contains(r.Verbs, p.verb) {
			return true
		}
	}
	return false
}

func expand(group string, resources, verbs []string) []rbacRule {
	var out []rbacRule
	for _, r := range resources {
		for _, v := range verbs {
			out = append(out, rbacRule{group, r, v})
		}
	}
	return out
}

// grants returns the rules the DaemonSet's ServiceAccount gets cluster-wide and in the release's namespace, through
// the bindings the chart renders (a role nobody binds grants nothing).
func (r *rendered) grants(t *testing.T) (cluster, namespaced []rbacv1.PolicyRule) {
	t.Helper()
	sa, ns := r.ds.Spec.Template.Spec.ServiceAccountName, r.ds.Namespace
	subject := func(subjects []rbacv1.Subject) bool {
		for _, s := range subjects {
			if s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == ns {
				return true
			}
		}
		return false
	}
	for _, b := range r.clusterBinding {
		if cr := r.clusterRoles[b.RoleRef.Name]; subject(b.Subjects) && b.RoleRef.Kind == "ClusterRole" && cr != nil {
			cluster = append(cluster, cr.Rules...)
		}
	}
	for _, b := range r.roleBindings {
		if rl := r.roles[b.RoleRef.Name]; subject(b.Subjects) && b.RoleRef.Kind == "Role" && rl != nil && b.Namespace == ns && rl.Namespace == ns {
			namespaced = append(namespaced, rl.Rules...)
		}
	}
	return cluster, namespaced
}

func TestRBAC(t *testing.T) {
	// What keeplog (pod description, owner chain, PV annotations, GC, Events, Leases) and csi-provisioner
	// --node-deployment --enable-capacity call.
	clusterWant := slices.Concat(
		expand("", []string{"pods"}, []string{"get", "list", "watch"}),
		expand("apps", []string{"replicasets", "deployments", "statefulsets", "daemonsets"}, []string{"get"}),
		expand("batch", []string{"jobs", "cronjobs"}, []string{"get"}),
		expand("", []string{"replicationcontrollers"}, []string{"get"}),
		expand("", []string{"persistentvolumes"}, []string{"get", "list", "watch", "create", "patch", "update", "delete"}),
		expand("", []string{"persistentvolumeclaims"}, []string{"get", "list", "watch", "update"}),
		expand("", []string{"nodes"}, []string{"get", "list", "watch"}),
		expand("storage.k8s.io", []string{"storageclasses", "csinodes"}, []string{"get", "list", "watch"}),
		expand("", []string{"events"}, []string{"create", "patch"}),
	)
	nsWant := slices.Concat(
		expand("coordination.k8s.io", []string{"leases"}, []string{"get", "list", "watch", "create", "update", "delete"}),
		expand("storage.k8s.io", []string{"csistoragecapacities"}, []string{"get", "list", "watch", "create", "update", "patch", "delete"}),
	)
	exec := rbacRule{"", "pods/exec", "create"}
	patchPods := rbacRule{"", "pods", "patch"}
	// --metrics-auth=kubernetes (the default) reviews each scraper's token.
	reviews := []rbacRule{{"authentication.k8s.io", "tokenreviews", "create"}, {"authorization.k8s.io", "subjectaccessreviews", "create"}}
	for _, tc := range []struct {
		name      string
		set       []string
		exec      bool
		capacity  bool
		namespace string
		reviews   bool
	}{
		{"defaults", nil, false, true, "keeplog", true},
		{"exec, webhook, no capacity, metrics open", []string{"heapDumps.allowExec=true", "heapDumps.webhook.enabled=true", "heapDumps.webhook.tokenSecret=dump-token", "capacity.enabled=false", "metrics.auth=none"}, true, false, "other", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, Options{Set: tc.set, Namespace: tc.namespace})
			cluster, namespaced := r.grants(t)
			for _, p := range clusterWant {
				if !allows(cluster, p) {
					t.Errorf("cluster-wide %s is not granted", p)
				}
			}
			for _, p := range nsWant {
				want := p.resource != "csistoragecapacities" || tc.capacity
				if got := allows(namespaced, p) || allows(cluster, p); got != want {
					t.Errorf("%s in namespace %s: granted %v, want %v", p, tc.namespace, got, want)
				}
				if allows(cluster, p) {
					t.Errorf("%s is granted cluster-wide; it belongs in the release's namespace", p)
				}
			}
			if got := allows(cluster, exec); got != tc.exec {
				t.Errorf("pods/exec create granted %v, want %v (heapDumps.allowExec)", got, tc.exec)
			}
			if got := allows(cluster, patchPods); got != tc.exec {
				t.Errorf("pods patch granted %v, want %v (heapDumps.webhook.enabled)", got, tc.exec)
			}
			for _, p := range reviews {
				if got := allows(cluster, p); got != tc.reviews {
					t.Errorf("%s granted %v with %v (metrics.auth=kubernetes needs it, none does not)", p, got, tc.set)
				}
			}
			reader := r.clusterRoles[r.ds.Name+"-metrics-reader"]
			if reader == nil || len(reader.Rules) != 1 || !slices.Equal(reader.Rules[0].NonResourceURLs, []string{"/metrics"}) ||
				!slices.Equal(reader.Rules[0].Verbs, []string{"get"}) {
				t.Errorf("ClusterRole %s-metrics-reader: %+v, want get on the non-resource URL /metrics only", r.ds.Name, reader)
			}
			for _, rule := range slices.Concat(cluster, namespaced) {
				for _, s := range slices.Concat(rule.APIGroups, rule.Resources, rule.Verbs) {
					if s == "*" {
						t.Errorf("wildcard in rule %+v", rule)
					}
				}
				if slices.Contains(rule.Resources, "secrets") {
					t.Errorf("rule %+v grants Secrets; the SFTP target is a mounted volume", rule)
				}
			}
		})
	}
}

func TestAllValues(t *testing.T) {
	r := render(t, Options{Namespace: "ns1", ValuesFiles: []string{allValues()}})
	ds, spec := r.ds, r.ds.Spec.Template.Spec
	if ds.Name != "keeplog-all" || r.sa.Name != "keeplog-node" || spec.ServiceAccountName != "keeplog-node" ||
		r.sa.Annotations["example.com/owner"] != "platform" {
		t.Errorf("names: DaemonSet %s, ServiceAccount %s (%v), pod's %s", ds.Name, r.sa.Name, r.sa.Annotations, spec.ServiceAccountName)
	}
	if spec.HostNetwork || spec.HostPID || spec.DNSPolicy != "" || spec.PriorityClassName != "system-cluster-critical" ||
		*spec.TerminationGracePeriodSeconds != 45 || len(spec.ImagePullSecrets) != 1 || spec.Affinity == nil ||
		spec.NodeSelector["example.com/logs"] != "true" || len(spec.Tolerations) != 1 || spec.Tolerations[0].Key != "node-role.kubernetes.io/control-plane" {
		t.Errorf("pod spec does not follow the values: %+v", spec)
	}
	if ds.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType || ds.Spec.UpdateStrategy.RollingUpdate != nil {
		t.Errorf("updateStrategy %+v, want OnDelete alone", ds.Spec.UpdateStrategy)
	}
	if ds.Spec.Template.Labels["example.com/team"] != "platform" || ds.Spec.Template.Annotations["example.com/scrape"] != "no" ||
		ds.Spec.Template.Annotations["prometheus.io/scrape"] != "" {
		t.Errorf("pod labels %v annotations %v", ds.Spec.Template.Labels, ds.Spec.Template.Annotations)
	}

	d := r.driver
	if d.Name != "keeplog-test.csi.io" || *d.Spec.FSGroupPolicy != storagev1.FileFSGroupPolicy || *d.Spec.StorageCapacity {
		t.Errorf("CSIDriver %s %+v", d.Name, d.Spec)
	}
	dumps, short := r.classes["keeplog-dumps"], r.classes["keeplog-short"]
	if len(r.classes) != 2 || dumps == nil || short == nil {
		t.Fatalf("StorageClasses %v", r.classes)
	}
	wantParams := map[string]string{"archive": "true", "archivePatterns": "*.hprof,core.*", "deleteAfterUpload": "true",
		"firstOnly": "true", "retainFor": "72h", "limitAction": "block"}
	if !reflect.DeepEqual(dumps.Parameters, wantParams) || dumps.Provisioner != d.Name ||
		*dumps.ReclaimPolicy != corev1.PersistentVolumeReclaimDelete || *dumps.VolumeBindingMode != storagev1.VolumeBindingImmediate ||
		dumps.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" || dumps.Labels["example.com/tier"] != "logs" {
		t.Errorf("StorageClass keeplog-dumps %+v", dumps)
	}
	if !reflect.DeepEqual(short.Parameters, map[string]string{"archive": "false", "retainFor": "24h"}) ||
		*short.ReclaimPolicy != corev1.PersistentVolumeReclaimRetain || short.Annotations["storageclass.kubernetes.io/is-default-class"] != "" {
		t.Errorf("StorageClass keeplog-short %+v", short)
	}

	k := r.container(t, "keeplog")
	if k.Image != "registry.example.com/keeplog/keeplog@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" || k.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("keeplog image %s %s", k.Image, k.ImagePullPolicy)
	}
	f := wantFlags(t, k, map[string]string{
		"endpoint": "unix:///var/lib/kubelet-alt/plugins/keeplog-test.csi.io/csi.sock", "driver-name": "keeplog-test.csi.io",
		"root": "/data/keeplog", "pod-logs-dir": "/data/kubelet-pods", "http-address": "127.0.0.1:19808",
		"describe-interval": "10s", "shutdown-grace": "20s", "keep-env-values": "true", "log-format": "text", "v": "5",
		"kubeconfig":     "/etc/keeplog/kubeconfig/kubeconfig",
		"archive-target": "/etc/keeplog/archive", "archive-quiet-period": "45s", "archive-bandwidth": "25Mi",
		"archive-node-uploads": "2", "archive-cluster-uploads": "3", "archive-rescan-interval": "5m", "archive-lease-duration": "40s",
		"retain-for": "72h", "max-retain-for": "336h", "gc-interval": "30s", "gc-dry-run": "true",
		"gc-delete-unarchived": "true", "orphan-pv-grace": "48h",
		"disk-high-watermark": "85", "disk-low-watermark": "70.5", "disk-hard-limit": "97",
		"disk-inode-high-watermark": "88", "disk-inode-low-watermark": "60", "disk-inode-hard-limit": "93",
		"kubelet-root-dir": "/var/lib/kubelet-alt", "runtime-dir": "", // hostPID is off: PID 1 is the pod's own, so the runtime is not checked
		"usage-walk-interval": "2m", "usage-update-interval": "2s", "usage-walk-rate": "5000", "usage-enforcer": "none",
		"usage-block-grace": "20s",
		"cgroup-root":       "/host/sys/fs/cgroup-alt", "dump-poll-interval": "3s", "dump-cluster-max": "2", "dump-cooldown": "10m",
		"dump-timeout": "20m", "dump-slot-wait": "2m", "dump-quiet-period": "10s", "dump-lease-duration": "45s",
		"dump-host-network-address": "", // no hostNetwork: the pod IP
		"dump-webhook":              "true", "dump-webhook-token-file": "/etc/keeplog/dump-webhook/token",
		"vmodule": "node=6",
	})
	if last := k.Args[len(k.Args)-1]; last != "--vmodule=node=6" {
		t.Errorf("extraArgs are not last (they must override): last is %q", last)
	}
	for _, name := range []string{"kubelet-registration-dir", "kubelet-endpoint"} {
		if _, ok := f[name]; ok {
			t.Errorf("--%s is set although node-driver-registrar registers the driver", name)
		}
	}
	if v, _ := envValue(k, "GOMEMLIMIT"); v != "900MiB" {
		t.Errorf("extraEnv not rendered: %+v", k.Env)
	}
	if lp := k.LivenessProbe; lp.HTTPGet.Host != "127.0.0.1" || lp.PeriodSeconds != 7 || lp.InitialDelaySeconds != 3 ||
		lp.TimeoutSeconds != 2 || lp.FailureThreshold != 9 || k.Ports[0].ContainerPort != 19808 {
		t.Errorf("liveness probe %+v, ports %+v", lp, k.Ports)
	}
	if k.Resources.Limits.Memory().String() != "1Gi" {
		t.Errorf("keeplog resources %+v", k.Resources)
	}
	for vol, path := range map[string]string{"archive-target": f["archive-target"], "kubeconfig": filepath.Dir(f["kubeconfig"])} {
		m := mountOf(t, k, vol)
		if m.MountPath != path || !m.ReadOnly {
			t.Errorf("%s mounted at %s (read-only %v), want read-only at %s", vol, m.MountPath, m.ReadOnly, path)
		}
	}
	if v := r.volume(t, "archive-target"); v.Secret == nil || v.Secret.SecretName != "keeplog-sftp" {
		t.Errorf("archive-target volume %+v, want Secret keeplog-sftp", v.VolumeSource)
	}
	if v := r.volume(t, "kubeconfig"); v.Secret == nil || v.Secret.SecretName != "keeplog-kubeconfig" {
		t.Errorf("kubeconfig volume %+v", v.VolumeSource)
	}
	if v, m := r.volume(t, "dump-webhook-token"), mountOf(t, k, "dump-webhook-token"); v.Secret == nil ||
		v.Secret.SecretName != "keeplog-dump-token" || m.MountPath != filepath.Dir(f["dump-webhook-token-file"]) || !m.ReadOnly {
		t.Errorf("dump-webhook-token volume %+v at %s", v.VolumeSource, m.MountPath)
	}
	if v := r.volume(t, "cgroup"); v.HostPath == nil || v.HostPath.Path != "/sys/fs/cgroup-alt" {
		t.Errorf("cgroup volume %+v", v.VolumeSource)
	}
	var webhook []*corev1.Service
	for _, svc := range r.services {
		if svc.Name == ds.Name { // the other is the ServiceMonitor's <fullname>-metrics (monitoring_test.go)
			webhook = append(webhook, svc)
		}
	}
	if len(webhook) != 1 || webhook[0].Spec.Ports[0].Port != 19808 || webhook[0].Spec.Ports[0].TargetPort.StrVal != "http-metrics" ||
		!reflect.DeepEqual(webhook[0].Spec.Selector, r.ds.Spec.Selector.MatchLabels) {
		t.Errorf("webhook Service %+v, want one on the metrics port selecting the DaemonSet's pods", webhook)
	}

	p := r.container(t, "csi-provisioner")
	pf := wantFlags(t, p, map[string]string{"timeout": "45s", "worker-threads": "4", "retry-interval-start": "2s",
		"retry-interval-max": "1m", "http-endpoint": ":9809", "kubeconfig": "/etc/keeplog/kubeconfig/kubeconfig", "v": "4",
		"kube-api-qps": "20"})
	if _, ok := pf["enable-capacity"]; ok {
		t.Error("--enable-capacity with capacity.enabled=false")
	}
	if _, ok := r.roles["keeplog-all"]; !ok {
		t.Fatalf("roles %v", r.roles)
	}
	if allows(r.roles["keeplog-all"].Rules, rbacRule{"storage.k8s.io", "csistoragecapacities", "create"}) {
		t.Error("CSIStorageCapacity permissions without capacity tracking")
	}
	if p.Image != "registry.example.com/csi-provisioner:v6.3.1" {
		t.Errorf("csi-provisioner image %s", p.Image)
	}
	for _, c := range []*corev1.Container{k, p} {
		h, _ := envValue(c, "KUBERNETES_SERVICE_HOST")
		port, _ := envValue(c, "KUBERNETES_SERVICE_PORT")
		if h != "127.0.0.1" || port != "6443" {
			t.Errorf("container %s: API server override %q:%q", c.Name, h, port)
		}
	}

	g := r.container(t, "node-driver-registrar")
	wantFlags(t, g, map[string]string{"csi-address": "/csi/csi.sock",
		"kubelet-registration-path": socketPath(t, f["endpoint"]), "http-endpoint": ":9810"})
	envFieldRef(t, g, "KUBE_NODE_NAME", "spec.nodeName")
	if v, m := r.volume(t, "registration-dir"), mountOf(t, g, "registration-dir"); v.HostPath == nil ||
		v.HostPath.Path != "/var/lib/kubelet-registry" || m.MountPath != "/registration" {
		t.Errorf("registration-dir %+v at %s", v.VolumeSource, m.MountPath)
	}
	if g.Image != "registry.example.com/csi-node-driver-registrar:v2.99.0" {
		t.Errorf("registrar image %s", g.Image)
	}
}

// A registration directory outside kubelet's directory gets its own mount (no nested mount under the
// Bidirectional one otherwise).
func TestRegistrationDirOutsideKubeletDir(t *testing.T) {
	r := render(t, Options{Set: []string{"kubelet.registrationDir=/var/lib/plugins-elsewhere"}})
	k := r.container(t, "keeplog")
	f := flagsOf(t, k.Args)
	if f["kubelet-registration-dir"] != "/var/lib/plugins-elsewhere" {
		t.Errorf("--kubelet-registration-dir=%s", f["kubelet-registration-dir"])
	}
	if v, m := r.volume(t, "registration-dir"), mountOf(t, k, "registration-dir"); v.HostPath.Path != "/var/lib/plugins-elsewhere" || m.MountPath != v.HostPath.Path {
		t.Errorf("registration-dir %+v at %s", v.VolumeSource, m.MountPath)
	}
}

// With every create switch off the chart renders the DaemonSet alone, running as the namespace's default account.
func TestOptionalObjects(t *testing.T) {
	r := render(t, Options{Set: []string{"rbac.create=false", "serviceAccount.create=false", "csiDriver.create=false", "storageClasses=null"}})
	if len(r.objs) != 1 {
		t.Errorf("%d objects rendered, want the DaemonSet alone", len(r.objs))
	}
	if sa := r.ds.Spec.Template.Spec.ServiceAccountName; sa != "default" {
		t.Errorf("serviceAccountName %q, want default", sa)
	}
}

// freeForm values are maps the user fills with keys of their own (Kubernetes fields, labels): compared whole.
var freeForm = map[string]bool{"monitoring.serviceMonitor.labels": true, "monitoring.prometheusRule.labels": true,
	"monitoring.dashboard.labels": true, "monitoring.dashboard.annotations": true, "nodeSelector": true, "affinity": true, "podAnnotations": true, "podLabels": true,
	"serviceAccount.annotations": true, "updateStrategy.rollingUpdate": true, "keeplog.resources": true,
	"provisioner.resources": true, "registrar.resources": true, "retrieval.api.resources": true,
	"retrieval.api.nodeSelector": true, "retrieval.api.affinity": true}

// leaves lists the paths of every value in v: scalars, lists and free-form maps.
func leaves(prefix string, v any, out map[string]any) {
	path := strings.TrimPrefix(prefix, ".")
	if m, ok := v.(map[string]any); ok && !freeForm[path] {
		for k, c := range m {
			leaves(prefix+"."+k, c, out)
		}
		return
	}
	out[path] = v
}

func loadValues(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// The all-values file must set every value of values.yaml to something else, so TestAllValues and the server-side
// dry run see every branch. The create switches stay true there; TestOptionalObjects covers false.
func TestAllValuesSetsEveryOption(t *testing.T) {
	defaults, all := map[string]any{}, map[string]any{}
	leaves("", loadValues(t, filepath.Join(repo, "charts", "keeplog", "values.yaml")), defaults)
	leaves("", loadValues(t, allValues()), all)
	same := map[string]bool{"rbac.create": true, "serviceAccount.create": true, "csiDriver.create": true,
		"registrar.image.digest": true, "provisioner.image.digest": true}
	var missing []string
	for path, def := range defaults {
		got, ok := all[path]
		switch {
		case !ok:
			missing = append(missing, path+" (not set)")
		case reflect.DeepEqual(got, def) && !same[path]:
			missing = append(missing, fmt.Sprintf("%s (still the default %v)", path, def))
		}
	}
	for path := range all {
		if _, ok := defaults[path]; !ok {
			missing = append(missing, path+" (not a value of the chart)")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("test/chart/testdata/all-values.yaml and charts/keeplog/values.yaml disagree:\n  %s", strings.Join(missing, "\n  "))
	}
}

// values.schema.json refuses mistakes at install time instead of in a crash-looping pod.
func TestSchemaRefuses(t *testing.T) {
	for _, tc := range []struct{ set, want string }{
		{"keeplog.logFormat=xml", "logFormat"},
		{"keeplog.rot=/x", "rot"},
		{"gc.retainFor=1week", "retainFor"},
		{"gc.disk.hardLimit=120", "hardLimit"},
		{"gc.disk.lowWatermark=0", "lowWatermark"},
		{"keeplog.root=relative", "root"},
		{"keeplog.root=/", "root"},
		{"keeplog.describeInterval=often", "describeInterval"},
		{"archive.bandwidth=lots", "bandwidth"},
		{"archive.nodeUploads=0", "nodeUploads"},
		{"usage.enforcer=chattr", "enforcer"},
		{"heapDumps.hostNetworkAddress=localhost", "hostNetworkAddress"},
		{"metrics.port=70000", "port"},
		{"csiDriver.fsGroupPolicy=Sometimes", "fsGroupPolicy"},
		{"driverName=Bad_Name", "driverName"},
		{"storageClasses[0].name=keeplog,storageClasses[0].parameters.retainFor=forever", "retainFor"},
		{"storageClasses[0].name=keeplog,storageClasses[0].parameters.archiv=true", "archiv"},
		{"storageClasses[0].name=keeplog,storageClasses[0].parameters.limitAction=delete", "limitAction"},
		{"storageClasses[0].name=keeplog,storageClasses[0].reclaimPolicy=Recycle", "reclaimPolicy"},
		{"image.digest=latest", "digest"},
		{"apiServer.host=10.0.0.1", "apiServer.port is required"},
		{"retrieval.enabled=yes", "enabled"},
		{"retrieval.port=0", "port"},
		{"retrieval.host=10.0.0.1:9809", "host"},
		{"retrieval.bandwidth=0", "bandwidth"},
		{"retrieval.bandwidth=fast", "bandwidth"},
		{"retrieval.maxStreams=0", "maxStreams"},
		{"retrieval.certificateDays=0", "certificateDays"},
		{"retrieval.api.replicas=0", "replicas"},
		{"retrieval.api.bindAddress=localhost", "bindAddress"},
		{"retrieval.api.nodeEndpoints[0]=http://10.0.0.1:9809", "nodeEndpoints"},
		{"retrieval.api.nodeEndpoints[0]=n1=http://10.0.0.1:9809", "nodeEndpoints"},
		{"retrieval.api.service.externalName=Bad_Name", "externalName"},
		{"retrieval.api.replica=2", "replica"},
		{"heapDumps.webhook.enabled=true", "heapDumps.webhook.tokenSecret is required"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := Render(ctx, helm, repo, Options{Set: []string{tc.set}})
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--set %s: error %v, want one naming %q", tc.set, err, tc.want)
		}
	}
}

func TestHelmLint(t *testing.T) {
	for _, values := range []string{"", allValues()} {
		args := []string{"lint", "--strict", filepath.Join(repo, "charts", "keeplog")}
		if values != "" {
			args = append(args, "--values", values)
		}
		if out, err := exec.Command(helm, args...).CombinedOutput(); err != nil {
			t.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// keeplogBinary is $KEEPLOG_BIN (make passes bin/keeplog) or a fresh build of ./cmd/keeplog.
func keeplogBinary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("KEEPLOG_BIN"); b != "" {
		return b
	}
	bin := filepath.Join(t.TempDir(), "keeplog")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/keeplog")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/keeplog: %v\n%s", err, out)
	}
	return bin
}

var flagLine = regexp.MustCompile(`(?m)^  -([A-Za-z0-9][A-Za-z0-9_-]*)`)

// Every flag keeplog has is set by the chart (in the default render or the all-values one), except klog's own
// (the chart sets --v) and --version; and the binary accepts every rendered argument list.
func TestKeeplogFlags(t *testing.T) {
	bin := keeplogBinary(t)
	out, _ := exec.Command(bin, "--help").CombinedOutput() // exits 2 after printing the usage
	var all []string
	for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
		all = append(all, m[1])
	}
	if !slices.Contains(all, "root") || !slices.Contains(all, "node-id") {
		t.Fatalf("could not read keeplog's flags from --help:\n%s", out)
	}
	// --namespace defaults to $POD_NAMESPACE, which the DaemonSet sets from the downward API (TestDefaults checks it):
	// a kustomize overlay that changes the namespace then needs no argument rewritten.
	notSet := map[string]bool{"version": true, "namespace": true}
	for _, f := range klogFlags() {
		if f != "v" {
			notSet[f] = true
		}
	}
	set := map[string]bool{}
	for _, o := range []Options{{}, {ValuesFiles: []string{allValues()}}} {
		r := render(t, o)
		args := r.container(t, "keeplog").Args
		for name := range flagsOf(t, args) {
			set[name] = true
			if !slices.Contains(all, name) {
				t.Errorf("the chart passes --%s, which keeplog does not have", name)
			}
		}
		// The binary parses the flags before it looks at --version: an unknown flag or a malformed value fails.
		cmd := exec.Command(bin, append(slices.Clone(args), "--version")...)
		if out, err := cmd.CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "keeplog ") {
			t.Errorf("keeplog %s --version: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, f := range all {
		if !set[f] && !notSet[f] {
			t.Errorf("keeplog flag --%s is not set by the chart: add a value to charts/keeplog (values.yaml, values.schema.json, templates/daemonset.yaml, docs/install.md) and to test/chart/testdata/all-values.yaml", f)
		}
	}
}

// csi-provisioner v6.3.0 (built by hack/build-k8s.sh) accepts the rendered arguments.
func TestProvisionerFlags(t *testing.T) {
	bin := lab.DefaultProvisionerBin()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("csi-provisioner %s missing (make k8s builds it): %v", bin, err)
	}
	for _, o := range []Options{{}, {ValuesFiles: []string{allValues()}}} {
		args := render(t, o).container(t, "csi-provisioner").Args
		cmd := exec.Command(bin, append(slices.Clone(args), "--version")...)
		cmd.Env = append(os.Environ(), "NODE_NAME=node-1") // the DaemonSet's downward API; checked before --version
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), lab.ProvisionerVersion) {
			t.Errorf("csi-provisioner %s --version: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// klogFlags are the flags klog.InitFlags adds (keeplog's main registers them too).
func klogFlags() []string {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// docs/install.md's values table names every value of values.yaml (a group may be written as `parent.*`).
func TestInstallDocDocumentsEveryValue(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repo, "docs", "install.md"))
	if err != nil {
		t.Fatal(err)
	}
	defaults := map[string]any{}
	leaves("", loadValues(t, filepath.Join(repo, "charts", "keeplog", "values.yaml")), defaults)
	var missing []string
	for path := range defaults {
		documented := strings.Contains(string(readme), "`"+path+"`")
		for p := path; !documented && strings.Contains(p, "."); {
			p = p[:strings.LastIndex(p, ".")]
			documented = strings.Contains(string(readme), "`"+p+".*`")
		}
		if !documented {
			missing = append(missing, path)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("docs/install.md (the values table) does not document these values: %s", strings.Join(missing, ", "))
	}
}
