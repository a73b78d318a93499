//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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
	"github.com/keeplog/keeplog/pkg/store"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

const (
	kkNS1    = "kk-ns1"
	kkNS2    = "kk-ns2"
	kkSystem = "kk-system"
)

// TestKubectlKeeplog is issue #16 end to end on the real lab, installed by the chart (retrieval.enabled): the
// node plugin with its HTTPS read endpoint and keeplog-api from `make image`'s image, behind the lab's kube-apiserver
// aggregator (APIService v1alpha1.keeplog.csi.io with the chart's CA, front-proxy identity, delegated authn/authz
// with the chart's RBAC), and bin/kubectl-keeplog with ServiceAccount kubeconfigs. A pod in ns1 writes files and is
// deleted; A (get pods/log in ns1) lists and fetches them byte-identical; B (get pods/log in ns2 only) gets 403 for
// ns1 and sees only ns2's pod in ls -A; no token, a bad token, headers forged straight to keeplog-api and a call
// straight to the node endpoint without a token are refused; a path with ".." and the pod's symlink are refused.
func TestKubectlKeeplog(t *testing.T) {
	ctx := context.Background()
	env, sftp := kkInstall(ctx, t)
	for _, ns := range []string{kkNS1, kkNS2} {
		mustNamespace(ctx, t, env, ns)
	}
	work := t.TempDir()
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
	// The release archives: ls's ARCHIVE column says every matching file of the dead pod is done once the server
	// has them (the dump, at least), and describe says where the copy is.
	ref, err := store.ParsePodDirName(filepath.Base(dir))
	if err != nil {
		t.Fatal(err)
	}
	var out string
	var code int
	done := regexp.MustCompile(`oom-app .* (\d+)/(\d+) done`)
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(context.Context) (bool, error) {
		out, code = kk(kcA, "ls", "-n", kkNS1)
		m := done.FindStringSubmatch(out)
		return code == 0 && m != nil && m[1] == m[2] && m[1] != "0", nil
	}); err != nil {
		t.Fatalf("A: ls -n %s never showed oom-app's files archived: exit %d\n%s", kkNS1, code, out)
	}
	if !strings.Contains(out, "Retained") {
		t.Fatalf("A: ls -n %s: exit %d\n%s", kkNS1, code, out)
	}
	remote := sftp.Archived(t, ref, "dumps/heap.hprof")
	if got, want := fileSHA256(t, remote), fileSHA256(t, filepath.Join(dir, "dumps", "heap.hprof")); got != want {
		t.Errorf("the server's copy %s has sha256 %s, want the node's %s", remote, got, want)
	}
	t.Logf("A: ls -n %s after the archive:\n%s", kkNS1, out)
	if header := strings.Fields(strings.SplitN(out, "\n", 2)[0]); !slices.Contains(header, "ARCHIVE") || !slices.Contains(header, "EXPIRES") {
		t.Errorf("A: ls header %v, want ARCHIVE and EXPIRES", header)
	}
	if out, code := kk(kcA, "ls", "-A", "-o", "json"); code != 0 || namespacesOf(t, out) != kkNS1 {
		t.Errorf("A: ls -A: exit %d, namespaces %q\n%s", code, namespacesOf(t, out), out)
	} else {
		expiresAfter(t, out, "oom-app", kkRetainFor)
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
		!strings.Contains(out, "Node:") || !strings.Contains(out, "Archived copies") || !strings.Contains(out, "/archive/") {
		t.Errorf("A: describe: exit %d, want the dump's archived copy named\n%s", code, out)
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
	forged(ctx, t, env)
	nodeWithoutToken(ctx, t, env)
	upgradeKeepsCertificates(ctx, t, env)
	if out, code := kk(kcA, "ls", "-n", kkNS1); code != 0 || !strings.Contains(out, "oom-app") {
		t.Errorf("A: ls after the upgrade: exit %d\n%s", code, out)
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

// expiresAfter: the pod's expiry in an `ls -o json` answer is its end plus the chart's gc.retainFor.
func expiresAfter(t *testing.T, out, pod string, retainFor time.Duration) {
	t.Helper()
	var l retrievalapi.RetainedPodList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatal(err)
	}
	for _, p := range l.Items {
		if s := p.Status; s.PodName == pod {
			if s.UnpublishedAt == nil || s.ExpiresAt == nil || s.ExpiresAt.Sub(s.UnpublishedAt.Time) != retainFor {
				t.Errorf("%s ended %v, expires %v: want %s later (gc.retainFor)", pod, s.UnpublishedAt, s.ExpiresAt, retainFor)
			}
			return
		}
	}
	t.Errorf("no %s in %s", pod, out)
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
