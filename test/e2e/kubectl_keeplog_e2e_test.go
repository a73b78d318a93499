//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keeplog/keeplog/pkg/retrievalapi"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

const (
	kkNS1    = "kk-ns1"
	kkNS2    = "kk-ns2"
	kkSystem = "kk-system"
)

// TestKubectlKeeplog is issue #16 end to end on the real lab: bin/keeplog with its read endpoint, bin/keeplog-api
// behind the lab's kube-apiserver aggregator (APIService v1alpha1.keeplog.csi.io, front-proxy identity, delegated
// authn/authz with the RBAC the chart gives it), and bin/kubectl-keeplog with ServiceAccount kubeconfigs. A pod in
// ns1 writes files and is deleted; A (get pods/log in ns1) lists and fetches them byte-identical; B (get pods/log
// in ns2 only) gets 403 for ns1 and sees only ns2's pod in ls -A; no token, a bad token, and headers forged
// straight to keeplog-api are refused; a path with ".." and the pod's symlink are refused.
func TestKubectlKeeplog(t *testing.T) {
	ctx := context.Background()
	env := framework.SetupTest(t)
	nodeAddr := freeLoopbackAddress(t)
	if err := env.KillKeeplog(); err != nil {
		t.Fatal(err)
	}
	if err := env.StartKeeplog(ctx, "--retrieval-address="+nodeAddr); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{kkNS1, kkNS2, kkSystem} {
		mustNamespace(ctx, t, env, ns)
	}
	work := t.TempDir()
	apiAddr, apiCert := startKeeplogAPI(ctx, t, env, work, nodeAddr)
	registerAPIService(ctx, t, env, apiAddr, apiCert)

	grantRetainedPodsToAuthenticated(ctx, t, env)
	kcA := saKubeconfig(ctx, t, env, work, kkNS1, "reader-a")
	kcB := saKubeconfig(ctx, t, env, work, kkNS2, "reader-b")
	grantPodLogs(ctx, t, env, kkNS1, "reader-a")
	grantPodLogs(ctx, t, env, kkNS2, "reader-b")

	script := `echo "stdout of the dead pod"; echo "gc pause 12ms" > /logs/gc.log; mkdir -p /logs/dumps; ` +
		`dd if=/dev/urandom of=/logs/dumps/heap.hprof bs=1024 count=3072 2>/dev/null; ` +
		`ln -s /etc/shadow /logs/shadow; touch /logs/ready; sleep 3600`
	dir := runAndDelete(ctx, t, env, kkNS1, "oom-app", script)
	runAndDelete(ctx, t, env, kkNS2, "other-app", `echo other > /logs/x.log; touch /logs/ready; sleep 3600`)

	kk := func(kubeconfig string, args ...string) (string, int) {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(env.Repo, "bin", "kubectl-keeplog"), append(args, "--kubeconfig="+kubeconfig)...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("kubectl-keeplog %v: %v", args, err)
		}
		return string(out), code
	}
	out, code := kk(kcA, "ls", "-n", kkNS1)
	if code != 0 || !strings.Contains(out, "oom-app") || !strings.Contains(out, "Retained") {
		t.Fatalf("A: ls -n %s: exit %d\n%s", kkNS1, code, out)
	}
	if out, code := kk(kcA, "ls", "-A", "-o", "json"); code != 0 || namespacesOf(t, out) != kkNS1 {
		t.Errorf("A: ls -A: exit %d, namespaces %q\n%s", code, namespacesOf(t, out), out)
	}
	local := filepath.Join(work, "heap.hprof")
	want := fileSHA256(t, filepath.Join(dir, "dumps", "heap.hprof"))
	if out, code := kk(kcA, "cp", "-n", kkNS1, "oom-app:dumps/heap.hprof", local); code != 0 || !strings.HasPrefix(out, want) ||
		fileSHA256(t, local) != want {
		t.Errorf("A: cp: exit %d %q; want sha256 %s", code, out, want)
	}
	if out, code := kk(kcA, "logs", "-n", kkNS1, "oom-app"); code != 0 || strings.TrimSpace(out) != "stdout of the dead pod" {
		t.Errorf("A: logs: exit %d %q", code, out)
	}
	if out, code := kk(kcA, "logs", "-n", kkNS1, "oom-app", "--file", "gc.log"); code != 0 || out != "gc pause 12ms\n" {
		t.Errorf("A: logs --file gc.log: exit %d %q", code, out)
	}
	if out, code := kk(kcA, "describe", "-n", kkNS1, "oom-app"); code != 0 || !strings.Contains(out, "dumps/heap.hprof") ||
		!strings.Contains(out, "Node:") {
		t.Errorf("A: describe: exit %d\n%s", code, out)
	}
	for _, path := range []string{"shadow", "../" + filepath.Base(dir) + "/gc.log", "dumps/../gc.log"} {
		if out, code := kk(kcA, "cp", "-n", kkNS1, "oom-app:"+path, filepath.Join(work, "refused")); code != 1 ||
			(!strings.Contains(out, "403") && !strings.Contains(out, "400")) {
			t.Errorf("A: cp %s: exit %d %q, want a refusal", path, code, out)
		}
	}
	if _, err := os.Stat(filepath.Join(work, "refused")); err == nil {
		t.Error("a refused cp left a file")
	}

	if out, code := kk(kcB, "ls", "-n", kkNS1); code != 1 || !strings.Contains(out, "403") || strings.Contains(out, "oom-app") {
		t.Errorf("B: ls -n %s: exit %d %q, want 403", kkNS1, code, out)
	}
	if out, code := kk(kcB, "cp", "-n", kkNS1, "oom-app:gc.log", filepath.Join(work, "b")); code != 1 || !strings.Contains(out, "403") {
		t.Errorf("B: cp from %s: exit %d %q, want 403", kkNS1, code, out)
	}
	if out, code := kk(kcB, "ls", "-A", "-o", "json"); code != 0 || namespacesOf(t, out) != kkNS2 {
		t.Errorf("B: ls -A: exit %d, namespaces %q, want only %s\n%s", code, namespacesOf(t, out), kkNS2, out)
	}

	noToken := writeKubeconfig(t, env, work, "none", "")
	badToken := writeKubeconfig(t, env, work, "bad", "not-a-token")
	for _, kc := range []string{noToken, badToken} {
		if out, code := kk(kc, "ls", "-A"); code != 1 || strings.Contains(out, "oom-app") {
			t.Errorf("%s: ls -A: exit %d %q, want refused", filepath.Base(kc), code, out)
		}
	}
	forged(ctx, t, apiAddr, apiCert)
}

// forged calls keeplog-api directly with X-Remote-User/Group headers claiming a cluster admin, without the
// front-proxy client certificate: it must be refused.
func forged(ctx context.Context, t *testing.T, addr, certFile string) {
	t.Helper()
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+retrievalapi.BasePath+"/"+retrievalapi.Resource, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Remote-User", "admin")
	req.Header.Set("X-Remote-Group", "system:masters")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged X-Remote-User straight to keeplog-api: %d, want 401", resp.StatusCode)
	}
}

// startKeeplogAPI runs bin/keeplog-api on loopback as ServiceAccount kk-system/keeplog-api with the chart's RBAC
// (auth-delegator, extension-apiserver-authentication-reader, /retained/*) and returns its address and certificate.
func startKeeplogAPI(ctx context.Context, t *testing.T, env *framework.Env, work, nodeAddr string) (string, string) {
	t.Helper()
	rb := env.Client.RbacV1()
	sa := []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: kkSystem, Name: "keeplog-api"}}
	mustCreate(t, func() error {
		_, err := rb.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kk-auth-delegator"},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"}, Subjects: sa}, metav1.CreateOptions{})
		return err
	})
	mustCreate(t, func() error {
		_, err := rb.RoleBindings("kube-system").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kk-auth-reader"},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "extension-apiserver-authentication-reader"}, Subjects: sa}, metav1.CreateOptions{})
		return err
	})
	mustCreate(t, func() error {
		_, err := rb.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "kk-retained-reader"},
			Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, NonResourceURLs: []string{"/retained", "/retained/*"}}}}, metav1.CreateOptions{})
		return err
	})
	mustCreate(t, func() error {
		_, err := rb.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kk-retained-reader"},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "kk-retained-reader"}, Subjects: sa}, metav1.CreateOptions{})
		return err
	})
	kc := saKubeconfig(ctx, t, env, work, kkSystem, "keeplog-api")
	tokenFile := filepath.Join(work, "keeplog-api.token")
	if err := os.WriteFile(tokenFile, []byte(token(ctx, t, env, kkSystem, "keeplog-api")), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddress(t)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	certDir := filepath.Join(work, "keeplog-api-certs")
	p, err := env.Lab.StartProcess("keeplog-api", []string{filepath.Join(env.Repo, "bin", "keeplog-api"),
		"--bind-address=127.0.0.1", "--secure-port=" + port, "--cert-dir=" + certDir,
		"--service-dns=keeplog-api." + kkSystem + ".svc",
		"--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
		"--node-endpoint=" + env.Lab.NodeName() + "=http://" + nodeAddr, "--node-token-file=" + tokenFile, "--v=2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert := filepath.Join(certDir, "keeplog-api.crt")
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		if p.Exited() {
			return false, fmt.Errorf("keeplog-api exited: %s", p.LogTail(30))
		}
		c, err := http.Get("http://" + addr + "/healthz") // TLS only: any answer means it listens
		if err == nil {
			c.Body.Close()
		}
		_, serr := os.Stat(cert)
		return serr == nil && err == nil, nil
	}); err != nil {
		t.Fatalf("keeplog-api not serving: %v\n%s", err, p.LogTail(30))
	}
	return addr, cert
}

// registerAPIService points v1alpha1.keeplog.csi.io at keeplog-api through an ExternalName Service "localhost"
// and waits until the aggregator reports it Available.
func registerAPIService(ctx context.Context, t *testing.T, env *framework.Env, addr, certFile string) {
	t.Helper()
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: keeplog-api, namespace: %[1]s}
spec:
  type: ExternalName
  externalName: localhost
  ports: [{name: https, port: %[2]s}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: %[3]s.%[4]s}
spec:
  group: %[4]s
  version: %[3]s
  groupPriorityMinimum: 1000
  versionPriority: 100
  service: {namespace: %[1]s, name: keeplog-api, port: %[2]s}
  caBundle: %[5]s
`, kkSystem, port, retrievalapi.Version, retrievalapi.Group, base64.StdEncoding.EncodeToString(pem))
	path := filepath.Join(t.TempDir(), "apiservice.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := env.Lab.Kubectl(ctx, "apply", "-f", path); err != nil {
		t.Fatalf("apply the APIService: %v: %s", err, out)
	}
	var last string
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		last, _ = env.Lab.Kubectl(ctx, "get", "apiservice", retrievalapi.Version+"."+retrievalapi.Group, "-o",
			`jsonpath={.status.conditions[?(@.type=="Available")].status} {.status.conditions[?(@.type=="Available")].message}`)
		return strings.HasPrefix(last, "True"), nil
	}); err != nil {
		t.Fatalf("APIService not Available: %q", last)
	}
}

func mustCreate(t *testing.T, create func() error) {
	t.Helper()
	if err := create(); err != nil {
		t.Fatal(err)
	}
}

// token makes the ServiceAccount if needed and returns a token for it.
func token(ctx context.Context, t *testing.T, env *framework.Env, ns, name string) string {
	t.Helper()
	sas := env.Client.CoreV1().ServiceAccounts(ns)
	if _, err := sas.Get(ctx, name, metav1.GetOptions{}); err != nil {
		mustCreate(t, func() error {
			_, err := sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
			return err
		})
	}
	seconds := int64(3600)
	tr, err := sas.CreateToken(ctx, name, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &seconds}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// saKubeconfig is a kubeconfig for the lab's API server with the ServiceAccount's token.
func saKubeconfig(ctx context.Context, t *testing.T, env *framework.Env, work, ns, name string) string {
	t.Helper()
	return writeKubeconfig(t, env, work, ns+"-"+name, token(ctx, t, env, ns, name))
}

// writeKubeconfig is the lab's admin kubeconfig with its user's credentials replaced by token ("" for none).
func writeKubeconfig(t *testing.T, env *framework.Env, work, name, token string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(env.Lab.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.Token, ai.TokenFile, ai.ClientCertificate, ai.ClientKey = token, "", "", ""
		ai.ClientCertificateData, ai.ClientKeyData = nil, nil
	}
	path := filepath.Join(work, name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// grantRetainedPodsToAuthenticated is the chart's kube-apiserver side of the API: kube-apiserver authorizes a
// request for retainedpods itself before it proxies it, so every authenticated user may get and list them there;
// keeplog-api then allows only what the user may read of pod logs.
func grantRetainedPodsToAuthenticated(ctx context.Context, t *testing.T, env *framework.Env) {
	t.Helper()
	rb := env.Client.RbacV1()
	mustCreate(t, func() error {
		_, err := rb.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "kk-retainedpods"},
			Rules: []rbacv1.PolicyRule{{Verbs: []string{"get", "list"}, APIGroups: []string{retrievalapi.Group},
				Resources: []string{"retainedpods", "retainedpods/files", "retainedpods/file"}}}}, metav1.CreateOptions{})
		return err
	})
	mustCreate(t, func() error {
		_, err := rb.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kk-retainedpods"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "kk-retainedpods"},
			Subjects: []rbacv1.Subject{{Kind: "Group", APIGroup: rbacv1.GroupName, Name: "system:authenticated"}}}, metav1.CreateOptions{})
		return err
	})
}

// grantPodLogs lets the ServiceAccount get pods/log in its own namespace ns, and nothing else.
func grantPodLogs(ctx context.Context, t *testing.T, env *framework.Env, ns, sa string) {
	t.Helper()
	rb := env.Client.RbacV1()
	mustCreate(t, func() error {
		_, err := rb.Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "pod-logs"},
			Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods/log"}}}}, metav1.CreateOptions{})
		return err
	})
	mustCreate(t, func() error {
		_, err := rb.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "pod-logs-" + sa},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-logs"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: sa}}}, metav1.CreateOptions{})
		return err
	})
}

// runAndDelete runs a pod with a keeplog volume until it touched /logs/ready, deletes it and returns its directory.
func runAndDelete(ctx context.Context, t *testing.T, env *framework.Env, ns, name, script string) string {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: env.PodSpec(script, corev1.Volume{
		Name: "logs", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: claimTemplate()}}})}
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := env.WaitPodRunning(ctx, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	dir := env.PodDir(p)
	if err := framework.WaitFileContains(ctx, filepath.Join(dir, "ready"), ""); err != nil {
		t.Fatal(err)
	}
	// The stdout copy is made while the pod runs (--describe-interval) and at its end.
	if err := env.DeletePodAndWait(ctx, ns, name); err != nil {
		t.Fatal(err)
	}
	return dir
}

// namespacesOf is the distinct namespaces of an `ls -o json` answer, joined by commas.
func namespacesOf(t *testing.T, out string) string {
	t.Helper()
	var l retrievalapi.RetainedPodList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		return "unparseable: " + err.Error()
	}
	var ns []string
	for _, p := range l.Items {
		if len(ns) == 0 || ns[len(ns)-1] != p.Namespace {
			ns = append(ns, p.Namespace)
		}
	}
	return strings.Join(ns, ",")
}
