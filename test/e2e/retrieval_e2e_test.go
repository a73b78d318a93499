//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keeplog/keeplog/pkg/retrieval"
	"github.com/keeplog/keeplog/pkg/retrieval/wire"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

// TestRetrievalEndpoint: the node plugin's read endpoint (pkg/retrieval) on the real lab. A pod writes a log and a
// 3 MiB dump, plants a symlink to /etc/shadow and is deleted; the endpoint, with TokenReview and SubjectAccessReview
// by the lab's API server, refuses a request without a token (401) and a ServiceAccount without the non-resource
// URL (403), and gives the one bound to /retained/* the pod's files byte-identical (sha256), a resumed range, and
// refuses the symlink and a path with "..".
func TestRetrievalEndpoint(t *testing.T) {
	ctx := context.Background()
	env := framework.SetupTest(t)
	addr := freeLoopbackAddress(t)
	if err := env.KillKeeplog(); err != nil {
		t.Fatal(err)
	}
	if err := env.StartKeeplog(ctx, "--retrieval-address="+addr, "--retrieval-bandwidth=20Mi"); err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr + retrieval.PathPrefix + "/v1/pods"

	bindRetrievalReader(ctx, t, env, "retrieval-reader")
	reader := serviceAccountToken(ctx, t, env, "retrieval-reader")
	stranger := serviceAccountToken(ctx, t, env, "retrieval-stranger")

	ns := "retrieval-ns1"
	mustNamespace(ctx, t, env, ns)
	script := `echo "gc pause 12ms" > /logs/gc.log; mkdir -p /logs/dumps; ` +
		`dd if=/dev/urandom of=/logs/dumps/heap.hprof bs=1024 count=3072 2>/dev/null; ` +
		`ln -s /etc/shadow /logs/shadow; touch /logs/ready; sleep 3600`
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "oom-app", Namespace: ns}, Spec: env.PodSpec(script, corev1.Volume{
		Name: "logs", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: claimTemplate()}}})}
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := env.WaitPodRunning(ctx, ns, pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	dir := env.PodDir(p)
	if err := framework.WaitFileContains(ctx, filepath.Join(dir, "ready"), ""); err != nil {
		t.Fatal(err)
	}
	if err := env.DeletePodAndWait(ctx, ns, pod.Name); err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(dir)

	for _, tc := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {"forged", http.StatusUnauthorized}, {stranger, http.StatusForbidden}} {
		for _, u := range []string{base, base + "/" + name + "/files", fileQuery(base, name, "gc.log")} {
			if code, body := get(ctx, t, u, tc.token); code != tc.want || strings.Contains(body, "gc pause") {
				t.Errorf("GET %s with token %.8q: %d %q, want %d", u, tc.token, code, body, tc.want)
			}
		}
	}

	code, body := get(ctx, t, base, reader)
	var pods wire.PodList
	if code != http.StatusOK || json.Unmarshal([]byte(body), &pods) != nil {
		t.Fatalf("list pods: %d %s", code, body)
	}
	found := false
	for _, rp := range pods.Pods {
		if rp.Dir == name {
			found = rp.Namespace == ns && rp.Name == pod.Name && rp.UID == string(p.UID) && rp.UnpublishedAt != nil
		}
	}
	if !found {
		t.Fatalf("pod %s not listed as retained: %s", name, body)
	}
	code, body = get(ctx, t, base+"/"+name+"/files", reader)
	if code != http.StatusOK || !strings.Contains(body, `"path":"dumps/heap.hprof","size":3145728`) ||
		!strings.Contains(body, `"shadow":"symlink"`) {
		t.Fatalf("files: %d %s", code, body)
	}
	for _, rel := range []string{"gc.log", "dumps/heap.hprof"} {
		want := fileSHA256(t, filepath.Join(dir, rel))
		if got, n := fetchSHA256(ctx, t, fileQuery(base, name, rel), reader, ""); got != want {
			t.Errorf("%s: sha256 %s (%d bytes) over the endpoint, %s on the node", rel, got, n, want)
		}
	}
	// A resumed download: bytes from 1 MiB on, joined with the first MiB, is the dump.
	data, err := os.ReadFile(filepath.Join(dir, "dumps", "heap.hprof"))
	if err != nil {
		t.Fatal(err)
	}
	rest := fetch(ctx, t, fileQuery(base, name, "dumps/heap.hprof"), reader, "bytes=1048576-", http.StatusPartialContent)
	if sum := sha256.Sum256(append(data[:1<<20:1<<20], rest...)); hex.EncodeToString(sum[:]) != fileSHA256(t, filepath.Join(dir, "dumps", "heap.hprof")) {
		t.Errorf("resumed download: %d bytes from 1 MiB on do not complete the dump", len(rest))
	}
	for rel, want := range map[string]int{"shadow": http.StatusForbidden, "../" + name + "/gc.log": http.StatusBadRequest,
		"dumps/../gc.log": http.StatusBadRequest} {
		if code, body := get(ctx, t, fileQuery(base, name, rel), reader); code != want || strings.Contains(body, "root:") {
			t.Errorf("%s: %d %q, want %d", rel, code, body, want)
		}
	}
}

// bindRetrievalReader lets the ServiceAccount (in chartScraperNamespace) get the non-resource URLs /retained/*, as
// the chart binds keeplog-api.
func bindRetrievalReader(ctx context.Context, t *testing.T, env *framework.Env, sa string) {
	t.Helper()
	rb := env.Client.RbacV1()
	if _, err := rb.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "e2e-retrieval-reader"},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, NonResourceURLs: []string{"/retained", "/retained/*"}}}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rb.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "e2e-retrieval-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "e2e-retrieval-reader"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: chartScraperNamespace, Name: sa}}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func fileQuery(base, dir, rel string) string {
	return base + "/" + url.PathEscape(dir) + "/file?path=" + url.QueryEscape(rel)
}

// freeLoopbackAddress is a loopback address with a port nothing listens on right now.
func freeLoopbackAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// fetchSHA256 streams a file from the endpoint into sha256 and returns the hash and the byte count.
func fetchSHA256(ctx context.Context, t *testing.T, u, token, rng string) (string, int64) {
	t.Helper()
	resp := request(ctx, t, u, token, rng)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatalf("GET %s: after %d bytes: %v", u, n, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

func fetch(ctx context.Context, t *testing.T, u, token, rng string, want int) []byte {
	t.Helper()
	resp := request(ctx, t, u, token, rng)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != want {
		t.Fatalf("GET %s (Range %s): %d, %v, want %d", u, rng, resp.StatusCode, err, want)
	}
	return b
}

func request(ctx context.Context, t *testing.T, u, token, rng string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(fmt.Errorf("GET %s: %w", u, err))
	}
	return resp
}
