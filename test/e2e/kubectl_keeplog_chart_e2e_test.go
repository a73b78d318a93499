//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/pkg/retrieval"
	"github.com/keeplog/keeplog/pkg/retrievalapi"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

// The kubectl keeplog release: the chart installed as "keeplog" in kkSystem.
const (
	kkRelease     = "keeplog"
	kkAPISelector = "app.kubernetes.io/name=keeplog-api,app.kubernetes.io/instance=" + kkRelease
	// kkRetainFor is the release's gc.retainFor: ls shows each retained pod's expiry this long after its end.
	kkRetainFor = 72 * time.Hour
)

// kkPorts are the loopback ports the release's keeplog-api and node read endpoint listen on.
type kkPorts struct{ api, node int }

var kkListen kkPorts

// kkInstall starts the lab without a host keeplog, imports `make image`'s image and installs the chart with
// retrieval.enabled, shaped for a lab without kube-proxy or pod network (what docs/retrieval.md calls a
// kube-apiserver that reaches no cluster IP): keeplog-api on the host's network on loopback behind an ExternalName
// Service "localhost", the node endpoint on loopback as a fixed --node-endpoint. It waits until the plugin and
// keeplog-api run and the aggregator reports the APIService Available; cleanup uninstalls and stops the lab. The
// release archives to a real OpenSSH sftp server on the host's loopback (its Secret in kkSystem), so that ls and
// describe show a real archive state.
func kkInstall(ctx context.Context, t *testing.T) (*framework.Env, *framework.SFTP) {
	t.Helper()
	sftp := framework.StartSFTP(t) // stopped after the release is uninstalled (cleanups run last first)
	env, err := framework.SetupLabOnly(ctx, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	installed := false
	t.Cleanup(func() {
		if installed {
			for _, ns := range []string{kkNS1, kkNS2} {
				if err := deleteNamespacePods(context.Background(), env, ns); err != nil {
					t.Error(err)
				}
			}
			if _, err := env.Helm(context.Background(), "uninstall", kkRelease, "--namespace", kkSystem, "--wait", "--timeout", "2m"); err != nil {
				t.Error(err)
			}
		}
		if err := env.Teardown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	mustNamespace(ctx, t, env, kkSystem)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "keeplog-sftp", Namespace: kkSystem}, Data: map[string][]byte{}}
	for _, k := range []string{"host", "port", "user", "privateKey", "knownHosts", "baseDir"} {
		b, err := os.ReadFile(filepath.Join(sftp.TargetDir, k))
		if err != nil {
			t.Fatal(err)
		}
		secret.Data[k] = b
	}
	if _, err := env.Client.CoreV1().Secrets(kkSystem).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := env.ImportChartImages(ctx); err != nil {
		t.Fatal(err)
	}
	values, _, err := env.ChartValuesMap()
	if err != nil {
		t.Fatal(err)
	}
	kkListen = kkPorts{api: portOf(t, freeLoopbackAddress(t)), node: portOf(t, freeLoopbackAddress(t))}
	values["retrieval"] = map[string]any{"enabled": true, "host": "127.0.0.1", "port": kkListen.node,
		"api": map[string]any{"replicas": 1, "port": kkListen.api, "bindAddress": "127.0.0.1", "hostNetwork": true,
			"nodeEndpoints": []any{env.Lab.NodeName() + "=https://127.0.0.1:" + strconv.Itoa(kkListen.node)},
			"service":       map[string]any{"externalName": "localhost"}, "verbosity": 4}}
	values["gc"] = map[string]any{"retainFor": kkRetainFor.String()}
	values["archive"] = map[string]any{"secretName": secret.Name}
	path, err := env.WriteValues("kk-values.yaml", values)
	if err != nil {
		t.Fatal(err)
	}
	out, err := env.Helm(ctx, "install", kkRelease, filepath.Join(env.Repo, "charts", "keeplog"), "--namespace", kkSystem, "--values", path)
	installed = err == nil
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("helm install:\n%s", out)
	for _, sel := range []string{"app.kubernetes.io/name=keeplog,app.kubernetes.io/instance=" + kkRelease, kkAPISelector} {
		if _, err := env.WaitDaemonSetPod(ctx, kkSystem, sel, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	var last string
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		last, _ = env.Lab.Kubectl(ctx, "get", "apiservice", retrievalapi.Version+"."+retrievalapi.Group, "-o",
			`jsonpath={.status.conditions[?(@.type=="Available")].status} {.status.conditions[?(@.type=="Available")].message}`)
		return strings.HasPrefix(last, "True"), nil
	}); err != nil {
		t.Fatalf("APIService not Available: %q", last)
	}
	return env, sftp
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	p, err := strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// kkClient trusts the chart's CA (from the Secret it made) and checks serverName.
func kkClient(ctx context.Context, t *testing.T, env *framework.Env, secret, serverName string) *http.Client {
	t.Helper()
	s, err := env.Client.CoreV1().Secrets(kkSystem).Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.Data["ca.crt"]) {
		t.Fatalf("Secret %s has no ca.crt", secret)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}}}
}

// kkStatus is the status of a GET with the headers.
func kkStatus(ctx context.Context, t *testing.T, hc *http.Client, url string, header map[string]string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// forged calls keeplog-api directly (its certificate verified: the chart's CA, its Service's name) with
// X-Remote-User/Group headers claiming a cluster admin, without the front-proxy client certificate: refused.
func forged(ctx context.Context, t *testing.T, env *framework.Env) {
	t.Helper()
	hc := kkClient(ctx, t, env, kkRelease+"-api-tls", kkRelease+"-api."+kkSystem+".svc")
	url := "https://127.0.0.1:" + strconv.Itoa(kkListen.api) + retrievalapi.BasePath + "/" + retrievalapi.Resource
	if code := kkStatus(ctx, t, hc, url, map[string]string{"X-Remote-User": "admin", "X-Remote-Group": "system:masters"}); code != http.StatusUnauthorized {
		t.Errorf("forged X-Remote-User straight to keeplog-api: %d, want 401", code)
	}
}

// nodeWithoutToken calls the node plugin's read endpoint directly (its certificate verified: the one name all node
// certificates hold): without a token, and with another ServiceAccount's, it is refused.
func nodeWithoutToken(ctx context.Context, t *testing.T, env *framework.Env) {
	t.Helper()
	hc := kkClient(ctx, t, env, kkRelease+"-node-tls", kkRelease+"-node."+kkSystem)
	url := "https://127.0.0.1:" + strconv.Itoa(kkListen.node) + retrieval.PathPrefix + "/v1/pods"
	if code := kkStatus(ctx, t, hc, url, nil); code != http.StatusUnauthorized {
		t.Errorf("node endpoint without a token: %d, want 401", code)
	}
	other := token(ctx, t, env, kkNS1, "reader-a")
	if code := kkStatus(ctx, t, hc, url, map[string]string{"Authorization": "Bearer " + other}); code != http.StatusForbidden {
		t.Errorf("node endpoint with reader-a's token: %d, want 403", code)
	}
}

// upgradeKeepsCertificates: helm upgrade finds the chart's Secrets (lookup) and keeps the CA and both serving
// certificates, so the APIService's caBundle and the running pods stay valid; the APIService is still Available.
func upgradeKeepsCertificates(ctx context.Context, t *testing.T, env *framework.Env) {
	t.Helper()
	read := func() map[string]string {
		got := map[string]string{}
		for _, name := range []string{kkRelease + "-api-tls", kkRelease + "-node-tls"} {
			s, err := env.Client.CoreV1().Secrets(kkSystem).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range s.Data {
				got[name+"/"+k] = string(v)
			}
		}
		bundle, err := env.Lab.Kubectl(ctx, "get", "apiservice", retrievalapi.Version+"."+retrievalapi.Group, "-o", "jsonpath={.spec.caBundle}")
		if err != nil {
			t.Fatal(err)
		}
		got["caBundle"] = bundle
		return got
	}
	before := read()
	if _, err := env.Helm(ctx, "upgrade", kkRelease, filepath.Join(env.Repo, "charts", "keeplog"), "--namespace", kkSystem, "--reuse-values"); err != nil {
		t.Fatal(err)
	}
	after := read()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("helm upgrade changed %s", k)
		}
	}
	if len(before) != 7 {
		t.Errorf("read %d certificate fields, want ca.crt, tls.crt, tls.key of two Secrets and the caBundle", len(before))
	}
	var last string
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		last, _ = env.Lab.Kubectl(ctx, "get", "apiservice", retrievalapi.Version+"."+retrievalapi.Group, "-o",
			`jsonpath={.status.conditions[?(@.type=="Available")].status}`)
		return last == "True", nil
	}); err != nil {
		t.Errorf("APIService after the upgrade: Available %q", last)
	}
}
