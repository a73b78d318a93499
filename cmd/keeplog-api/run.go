package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	genericapifilters "k8s.io/apiserver/pkg/endpoints/filters"
	"k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/keeplog/keeplog/internal/certreload"
	"github.com/keeplog/keeplog/pkg/retrievalapi"
)

// run wires k8s.io/apiserver's secure serving, delegated authentication and authorization around the API and
// serves until ctx ends.
func run(ctx context.Context, o *Options) error {
	serving, err := o.secureServing(certreload.Deps{Log: klog.Background().WithName("serving-cert")}, certreload.DefaultInterval)
	if err != nil {
		return err
	}
	var authn server.AuthenticationInfo
	if err := o.Authn.ApplyTo(&authn, serving, nil); err != nil {
		return err
	}
	var authz server.AuthorizationInfo
	if err := o.Authz.ApplyTo(&authz); err != nil {
		return err
	}
	nodes, err := o.nodeLister()
	if err != nil {
		return err
	}
	hc, err := nodeClient(o.NodeCAFile, o.NodeServerName, certreload.Deps{Log: klog.Background().WithName("node-ca")})
	if err != nil {
		return err
	}
	api, err := retrievalapi.New(retrievalapi.Deps{Nodes: nodes, HTTP: hc, Authorizer: authz.Authorizer,
		Token: tokenFile(o.NodeTokenFile), Log: klog.Background().WithName("retrievalapi")})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	for _, p := range []string{"/healthz", "/readyz", "/livez"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprintln(w, "ok") })
	}
	guarded := genericapifilters.WithAuthentication(api, authn.Authenticator, http.HandlerFunc(unauthorized), nil, authn.RequestHeaderConfig)
	mux.Handle("/apis", guarded)
	mux.Handle("/apis/", guarded)
	stopped, _, err := serving.Serve(mux, 10*time.Second, ctx.Done())
	if err != nil {
		return err
	}
	klog.InfoS("Serving "+retrievalapi.BasePath, "address", serving.Listener.Addr().String(), "version", version)
	<-stopped
	return nil
}

func unauthorized(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":%q,"code":401}`,
		metav1.StatusReasonUnauthorized)
}

// secureServing is the listener and serving certificate: --tls-cert-file/--tls-private-key-file, read again every
// interval (servingCert: a rotated pair applies to the next handshake, a broken one keeps the last good pair and is
// logged once), else a self-signed one for --service-dns.
func (o *Options) secureServing(cert certreload.Deps, every time.Duration) (*server.SecureServingInfo, error) {
	if err := o.Serving.MaybeDefaultWithSelfSignedCerts("localhost", o.ServiceDNS, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("self-signed serving certificate: %w", err)
	}
	var serving *server.SecureServingInfo
	if err := o.Serving.ApplyTo(&serving); err != nil {
		return nil, err
	}
	if f := o.Serving.ServerCert.CertKey; f.CertFile != "" {
		// In place of ApplyTo's dynamiccertificates file content, which has not started (Serve starts it).
		pair, err := newServingCert(certreload.Config{CertFile: f.CertFile, KeyFile: f.KeyFile, Interval: every}, cert, nil)
		if err != nil {
			return nil, err
		}
		serving.Cert = pair
	}
	return serving, nil
}

// nodeLister is --node-endpoint's fixed list, or the DaemonSet's pods.
func (o *Options) nodeLister() (retrievalapi.NodeLister, error) {
	if len(o.NodeEndpoints) > 0 {
		var s staticNodes
		for _, e := range o.NodeEndpoints {
			ep, _ := parseEndpoint(e) // checked by Validate
			s = append(s, retrievalapi.Node{Name: ep.name, URL: ep.url})
		}
		return s, nil
	}
	var cfg *rest.Config
	var err error
	if o.Kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ns := o.NodeNamespace
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	if ns == "" {
		return nil, errors.New("--node-namespace or $POD_NAMESPACE is required to find the node plugins")
	}
	return podNodes{client: cs, namespace: ns, selector: o.NodeSelector, port: o.NodePort}, nil
}

// tokenFile reads the token at each call.
func tokenFile(path string) retrievalapi.TokenSource {
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("%s is empty", path)
		}
		return t, nil
	}
}
