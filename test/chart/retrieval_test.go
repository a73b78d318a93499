package chart

import (
	"crypto/x509"
	"encoding/pem"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/keeplog/keeplog/pkg/retrievalapi"
)

// retrievalOn is the read path with the chart's defaults otherwise.
var retrievalOn = Options{Set: []string{"retrieval.enabled=true"}}

// Off by default: no keeplog-api, no APIService, no certificates, no read endpoint on the nodes (no port opened).
func TestRetrievalOffByDefault(t *testing.T) {
	r := render(t, Options{})
	if len(r.deployments) != 0 || len(r.secrets) != 0 || r.custom["APIService"] != nil {
		t.Errorf("default render has %d Deployments, %d Secrets, APIService %v", len(r.deployments), len(r.secrets), r.custom["APIService"] != nil)
	}
	for name := range flagsOf(t, r.container(t, "keeplog").Args) {
		if strings.HasPrefix(name, "retrieval-") {
			t.Errorf("default render sets --%s", name)
		}
	}
	for _, v := range r.ds.Spec.Template.Spec.Volumes {
		if v.Name == "retrieval-tls" {
			t.Error("default render mounts the read endpoint's certificate")
		}
	}
}

// retrievalDeployment is the one Deployment, keeplog-api.
func retrievalDeployment(t *testing.T, r *rendered) *appsv1.Deployment {
	t.Helper()
	if len(r.deployments) != 1 {
		t.Fatalf("%d Deployments, want keeplog-api's", len(r.deployments))
	}
	return r.deployments[0]
}

// The node plugin serves its read endpoint over HTTPS with the chart's node certificate; keeplog-api trusts that
// CA, checks that one name, finds the DaemonSet's pods, and its own pods are not the DaemonSet's.
func TestRetrievalWiring(t *testing.T) {
	r := render(t, retrievalOn)
	d := retrievalDeployment(t, r)
	k := r.container(t, "keeplog")
	wantFlags(t, k, map[string]string{"retrieval-address": ":9809", "retrieval-tls-cert-file": "/etc/keeplog/retrieval/tls.crt",
		"retrieval-tls-key-file": "/etc/keeplog/retrieval/tls.key", "retrieval-bandwidth": "50Mi", "retrieval-max-streams": "4"})
	if v := r.volume(t, "retrieval-tls"); v.Secret == nil || v.Secret.SecretName != "keeplog-node-tls" || *v.Secret.DefaultMode != 0o400 {
		t.Errorf("retrieval-tls volume %+v, want Secret keeplog-node-tls mode 0400", v.VolumeSource)
	}
	if m := mountOf(t, k, "retrieval-tls"); m.MountPath != "/etc/keeplog/retrieval" || !m.ReadOnly {
		t.Errorf("retrieval-tls mounted %+v", m)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if !slices.Equal(c.Command, []string{"/usr/local/bin/keeplog-api"}) || c.Image != k.Image {
		t.Errorf("keeplog-api container %s %v, want the plugin's image with /usr/local/bin/keeplog-api", c.Image, c.Command)
	}
	wantFlags(t, &c, map[string]string{"secure-port": "8443", "node-port": "9809", "node-namespace": "keeplog",
		"node-server-name": "keeplog-node.keeplog", "node-ca-file": "/etc/keeplog-api/tls/ca.crt",
		"tls-cert-file": "/etc/keeplog-api/tls/tls.crt", "tls-private-key-file": "/etc/keeplog-api/tls/tls.key",
		"node-selector": "app.kubernetes.io/name=keeplog,app.kubernetes.io/instance=keeplog"})
	nodes, err := labels.Parse(flagsOf(t, c.Args)["node-selector"])
	if err != nil {
		t.Fatal(err)
	}
	if !nodes.Matches(labels.Set(r.ds.Spec.Template.Labels)) || nodes.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("--node-selector %s must select the DaemonSet's pods %v and not keeplog-api's %v", nodes, r.ds.Spec.Template.Labels, d.Spec.Template.Labels)
	}
	ds, _ := metav1.LabelSelectorAsSelector(r.ds.Spec.Selector)
	if ds.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("the DaemonSet's selector %s matches keeplog-api's pods %v: it would adopt them", ds, d.Spec.Template.Labels)
	}
	if len(r.services) != 1 {
		t.Fatalf("%d Services, want keeplog-api's", len(r.services))
	}
	svc := r.services[0]
	api, _ := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) || svc.Spec.Ports[0].Port != 8443 ||
		svc.Spec.Ports[0].TargetPort.IntValue() != 8443 || !api.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("Service %s %+v does not lead to keeplog-api's port", svc.Name, svc.Spec)
	}
	as := r.custom["APIService"]
	if as == nil {
		t.Fatal("no APIService")
	}
	spec := as.Object["spec"].(map[string]any)
	service := spec["service"].(map[string]any)
	if as.GetName() != retrievalapi.Version+"."+retrievalapi.Group || spec["group"] != retrievalapi.Group ||
		spec["version"] != retrievalapi.Version || service["name"] != svc.Name || service["namespace"] != "keeplog" ||
		service["port"] != float64(8443) && service["port"] != int64(8443) {
		t.Errorf("APIService %s %v does not serve %s/%s from Service %s:8443", as.GetName(), spec, retrievalapi.Group, retrievalapi.Version, svc.Name)
	}
	if _, ok := spec["insecureSkipTLSVerify"]; ok {
		t.Error("the APIService skips TLS verification")
	}
	// The arguments parse (keeplog-api parses every flag before it looks at --version).
	bin := filepath.Join(t.TempDir(), "keeplog-api")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(repo, "cmd", "keeplog-api")).CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/keeplog-api: %v\n%s", err, out)
	}
	for _, o := range []Options{retrievalOn, {ValuesFiles: []string{allValues()}}} {
		args := retrievalDeployment(t, render(t, o)).Spec.Template.Spec.Containers[0].Args
		if out, err := exec.Command(bin, append(slices.Clone(args), "--version")...).CombinedOutput(); err != nil ||
			!strings.HasPrefix(string(out), "keeplog-api ") {
			t.Errorf("keeplog-api %s --version: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// The certificates: one CA in the APIService's caBundle and both Secrets; keeplog-api's certificate holds its
// Service's names (the aggregator checks <service>.<namespace>.svc), the nodes' the one --node-server-name.
func TestRetrievalCertificates(t *testing.T) {
	r := render(t, retrievalOn)
	secrets := map[string]*corev1.Secret{}
	for _, s := range r.secrets {
		secrets[s.Name] = s
	}
	apiTLS, nodeTLS := secrets["keeplog-api-tls"], secrets["keeplog-node-tls"]
	if apiTLS == nil || nodeTLS == nil || len(secrets) != 2 {
		t.Fatalf("Secrets %v, want keeplog-api-tls and keeplog-node-tls", keys(secrets))
	}
	caPEM := apiTLS.Data["ca.crt"]
	bundle := r.custom["APIService"].Object["spec"].(map[string]any)["caBundle"]
	if string(nodeTLS.Data["ca.crt"]) != string(caPEM) || bundle == nil {
		t.Fatal("the Secrets and the APIService do not share one CA")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("ca.crt holds no certificate: %q", caPEM)
	}
	for _, tc := range []struct {
		secret *corev1.Secret
		name   string
	}{{apiTLS, "keeplog-api.keeplog.svc"}, {nodeTLS, "keeplog-node.keeplog"}} {
		block, _ := pem.Decode(tc.secret.Data["tls.crt"])
		if block == nil {
			t.Fatalf("%s: tls.crt is not PEM", tc.secret.Name)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: tc.name}); err != nil {
			t.Errorf("%s for %s: %v", tc.secret.Name, tc.name, err)
		}
		if key, _ := pem.Decode(tc.secret.Data["tls.key"]); key == nil || !strings.Contains(key.Type, "PRIVATE KEY") {
			t.Errorf("%s: tls.key is not a PEM private key", tc.secret.Name)
		}
	}
}

// keeplog-api passes the Pod Security Standards' restricted level (k8s.io/pod-security-admission's own checks),
// has probes and resources, and mounts its key readable by its group only.
func TestRetrievalAPIPodIsRestricted(t *testing.T) {
	eval, err := policy.NewEvaluator(policy.DefaultChecks())
	if err != nil {
		t.Fatal(err)
	}
	d := retrievalDeployment(t, render(t, retrievalOn))
	lv := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	for _, res := range eval.EvaluatePod(lv, &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec) {
		if !res.Allowed {
			t.Errorf("restricted: %s: %s", res.ForbiddenReason, res.ForbiddenDetail)
		}
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.ReadinessProbe == nil || c.LivenessProbe == nil || c.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTPS ||
		c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("keeplog-api probes %+v %+v, resources %+v", c.ReadinessProbe, c.LivenessProbe, c.Resources)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("keeplog-api's root filesystem is writable")
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && *v.Secret.DefaultMode&0o007 != 0 {
			t.Errorf("volume %s: Secret mode %o is world-readable", v.Name, *v.Secret.DefaultMode)
		}
	}
	if d.Spec.Template.Spec.HostNetwork || *d.Spec.Replicas != 2 {
		t.Errorf("keeplog-api hostNetwork %v replicas %d, want false and 2", d.Spec.Template.Spec.HostNetwork, *d.Spec.Replicas)
	}
}

// subjectGrants is the rules of every ClusterRole bound to the subject, and of every Role bound to it in ns.
func (r *rendered) subjectGrants(kind, name, namespace, ns string) (cluster, namespaced []rbacv1.PolicyRule) {
	has := func(subjects []rbacv1.Subject) bool {
		return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
			return s.Kind == kind && s.Name == name && s.Namespace == namespace
		})
	}
	for _, b := range r.clusterBinding {
		if cr := r.clusterRoles[b.RoleRef.Name]; has(b.Subjects) && cr != nil {
			cluster = append(cluster, cr.Rules...)
		}
	}
	for _, b := range r.roleBindings {
		if rl := r.roles[b.RoleRef.Name]; has(b.Subjects) && rl != nil && b.Namespace == ns {
			namespaced = append(namespaced, rl.Rules...)
		}
	}
	return cluster, namespaced
}

// keeplog-api's RBAC: what an aggregated API server needs (auth-delegator, the authentication ConfigMap's reader
// in kube-system), the read endpoints' non-resource URL and listing the plugin pods in the release's namespace,
// nothing else; the node plugin may review tokens even with metrics open; users get the retainedpods ClusterRole
// through system:authenticated unless retrieval.grantAuthenticated=false.
func TestRetrievalRBAC(t *testing.T) {
	r := render(t, Options{Set: []string{"retrieval.enabled=true", "metrics.auth=none"}})
	var delegator, reader bool
	for _, b := range r.clusterBinding {
		delegator = delegator || b.RoleRef.Name == "system:auth-delegator" && slices.Contains(b.Subjects,
			rbacv1.Subject{Kind: "ServiceAccount", Name: "keeplog-api", Namespace: "keeplog"})
	}
	for _, b := range r.roleBindings {
		reader = reader || b.Namespace == "kube-system" && b.RoleRef.Kind == "Role" && b.RoleRef.Name == "extension-apiserver-authentication-reader" &&
			slices.Contains(b.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: "keeplog-api", Namespace: "keeplog"})
	}
	if !delegator || !reader {
		t.Errorf("keeplog-api bound to system:auth-delegator %v, to extension-apiserver-authentication-reader in kube-system %v", delegator, reader)
	}
	cluster, namespaced := r.subjectGrants("ServiceAccount", "keeplog-api", "keeplog", "keeplog")
	if len(cluster) != 1 || !slices.Equal(cluster[0].NonResourceURLs, []string{"/retained", "/retained/*"}) ||
		!slices.Equal(cluster[0].Verbs, []string{"get"}) {
		t.Errorf("keeplog-api's own ClusterRole rules %+v, want get on /retained and /retained/* only", cluster)
	}
	if !allows(namespaced, rbacRule{"", "pods", "list"}) || len(namespaced) != 1 {
		t.Errorf("keeplog-api's Role rules %+v, want list pods in the release's namespace only", namespaced)
	}
	plugin, _ := r.grants(t)
	for _, p := range []rbacRule{{"authentication.k8s.io", "tokenreviews", "create"}, {"authorization.k8s.io", "subjectaccessreviews", "create"}} {
		if !allows(plugin, p) {
			t.Errorf("the node plugin cannot %s: its read endpoint reviews keeplog-api's token", p)
		}
	}
	users, _ := r.subjectGrants("Group", "system:authenticated", "", "")
	for _, res := range []string{"retainedpods", "retainedpods/files", "retainedpods/file"} {
		for _, verb := range []string{"get", "list"} {
			if !allows(users, rbacRule{retrievalapi.Group, res, verb}) {
				t.Errorf("system:authenticated may not %s %s", verb, res)
			}
		}
	}
	if len(users) != 1 {
		t.Errorf("system:authenticated is granted %+v, want the retainedpods rule only", users)
	}
	narrow := render(t, Options{Set: []string{"retrieval.enabled=true", "retrieval.grantAuthenticated=false"}})
	if users, _ := narrow.subjectGrants("Group", "system:authenticated", "", ""); len(users) != 0 || narrow.clusterRoles["keeplog-retained-reader"] == nil {
		t.Errorf("grantAuthenticated=false: system:authenticated granted %+v; the ClusterRole must still exist to bind", users)
	}
}

// For a kube-apiserver that reaches no cluster IP (the lab): keeplog-api on the hosts' network on one address, an
// ExternalName Service, fixed node endpoints, and the probes on that address.
func TestRetrievalWithoutClusterNetwork(t *testing.T) {
	r := render(t, Options{Set: []string{"retrieval.enabled=true", "retrieval.host=127.0.0.1", "retrieval.port=19809",
		"retrieval.api.hostNetwork=true", "retrieval.api.bindAddress=127.0.0.1", "retrieval.api.port=18443",
		"retrieval.api.service.externalName=localhost", "retrieval.api.nodeEndpoints[0]=n1=https://127.0.0.1:19809"}})
	wantFlags(t, r.container(t, "keeplog"), map[string]string{"retrieval-address": "127.0.0.1:19809"})
	d := retrievalDeployment(t, r)
	c := d.Spec.Template.Spec.Containers[0]
	wantFlags(t, &c, map[string]string{"bind-address": "127.0.0.1", "secure-port": "18443", "node-endpoint": "n1=https://127.0.0.1:19809"})
	if !d.Spec.Template.Spec.HostNetwork || d.Spec.Template.Spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet ||
		c.ReadinessProbe.HTTPGet.Host != "127.0.0.1" || c.LivenessProbe.HTTPGet.Host != "127.0.0.1" {
		t.Errorf("hostNetwork %v dnsPolicy %s probe hosts %q %q", d.Spec.Template.Spec.HostNetwork, d.Spec.Template.Spec.DNSPolicy,
			c.ReadinessProbe.HTTPGet.Host, c.LivenessProbe.HTTPGet.Host)
	}
	svc := r.services[0]
	if svc.Spec.Type != corev1.ServiceTypeExternalName || svc.Spec.ExternalName != "localhost" || len(svc.Spec.Selector) != 0 ||
		svc.Spec.Ports[0].Port != 18443 {
		t.Errorf("Service %+v, want ExternalName localhost on port 18443", svc.Spec)
	}
}
