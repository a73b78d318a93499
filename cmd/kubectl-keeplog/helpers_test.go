package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/retrievaltest"
	"github.com/keeplog/keeplog/pkg/retrieval"
	"github.com/keeplog/keeplog/pkg/retrievalapi"
	"github.com/keeplog/keeplog/pkg/store"
)

// cluster is the real chain below the plugin: a node endpoint (pkg/retrieval over a real store), the aggregated
// API (pkg/retrievalapi) and, in front, an HTTPS server standing in for kube-apiserver's authentication: bearer
// tokens to users. Users may read pod logs in the namespaces of allowed.
type cluster struct {
	t    *testing.T
	st   *store.Store
	api  *httptest.Server
	work string
}

var allowed = map[string]string{"alice": "ns1", "bob": "ns2"}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	st, err := store.Open(t.TempDir(), clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	node, err := retrieval.New(retrieval.Config{}, retrieval.Deps{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	nodeSrv := httptest.NewServer(node)
	t.Cleanup(nodeSrv.Close)
	api, err := retrievalapi.New(retrievalapi.Deps{Nodes: nodes{{Name: "node-1", URL: nodeSrv.URL}}, HTTP: &http.Client{},
		Token: func() (string, error) { return "t", nil }, Authorizer: retrievaltest.LogReaders(allowed), Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if _, known := allowed[name]; !ok || !known {
			http.Error(w, `{"kind":"Status","message":"Unauthorized","code":401}`, http.StatusUnauthorized)
			return
		}
		api.ServeHTTP(w, r.WithContext(request.WithUser(r.Context(), &user.DefaultInfo{Name: name})))
	}))
	t.Cleanup(front.Close)
	return &cluster{t: t, st: st, api: front, work: t.TempDir()}
}

type nodes []retrievalapi.Node

func (n nodes) Nodes(context.Context) ([]retrievalapi.Node, error) { return n, nil }

// pod records a retained pod directory on node-1 with files.
func (c *cluster) pod(vol string, ref store.PodRef, files map[string]string) string {
	c.t.Helper()
	return retrievaltest.Record(c.t, c.st, retrievaltest.Pod{Volume: vol, Node: "node-1", Ref: ref, Files: files})
}

// kubeconfig for user (its token is its name) with namespace ns as the context's.
func (c *cluster) kubeconfig(userName, ns string) string {
	c.t.Helper()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.api.Certificate().Raw})
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["lab"] = &clientcmdapi.Cluster{Server: c.api.URL, CertificateAuthorityData: ca}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: userName}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: "u", Namespace: ns}
	cfg.CurrentContext = "c"
	path := filepath.Join(c.work, userName+"-"+ns+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// kk runs the plugin and returns stdout, stderr and the exit code.
func kk(t *testing.T, kubeconfig string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append(args, "--kubeconfig="+kubeconfig), &out, &errb)
	return out.String(), errb.String(), code
}
