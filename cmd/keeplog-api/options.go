package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/labels"
	genericoptions "k8s.io/apiserver/pkg/server/options"
)

// Options are keeplog-api's flags: k8s.io/apiserver's serving, authentication and authorization options, and where
// the node plugins are.
type Options struct {
	Serving *genericoptions.SecureServingOptions
	Authn   *genericoptions.DelegatingAuthenticationOptions
	Authz   *genericoptions.DelegatingAuthorizationOptions

	Kubeconfig     string
	NodeEndpoints  []string // name=URL, instead of finding the DaemonSet's pods
	NodeNamespace  string
	NodeSelector   string
	NodePort       int
	NodeCAFile     string
	NodeServerName string
	NodeTokenFile  string
	// ServiceDNS are the names of keeplog-api's Service, for a self-signed serving certificate.
	ServiceDNS []string
}

func newOptions() *Options {
	o := &Options{Serving: genericoptions.NewSecureServingOptions(), Authn: genericoptions.NewDelegatingAuthenticationOptions(),
		Authz: genericoptions.NewDelegatingAuthorizationOptions()}
	o.Serving.BindPort = 8443
	o.Serving.ServerCert.PairName = "keeplog-api"
	return o
}

// AddFlags registers the flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.Serving.AddFlags(fs)
	o.Authn.AddFlags(fs)
	o.Authz.AddFlags(fs)
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig to find the node plugins' pods; in-cluster configuration when empty")
	fs.StringSliceVar(&o.NodeEndpoints, "node-endpoint", nil, "a node plugin's read endpoint as <node>=<URL> (repeatable); when given, the DaemonSet's pods are not looked up")
	fs.StringVar(&o.NodeNamespace, "node-namespace", "", "namespace of the node plugin pods (default $POD_NAMESPACE)")
	fs.StringVar(&o.NodeSelector, "node-selector", "app.kubernetes.io/name=keeplog,app.kubernetes.io/component=node", "label selector of the node plugin pods")
	fs.IntVar(&o.NodePort, "node-port", 9809, "port of the node plugins' --retrieval-address on their host IP")
	fs.StringVar(&o.NodeCAFile, "node-ca-file", "", "CA bundle (PEM) that signed the node plugins' serving certificates")
	fs.StringVar(&o.NodeServerName, "node-server-name", "", "the name every node plugin's serving certificate holds (one certificate for all nodes, which are reached by IP); empty: each node's certificate must hold its IP")
	fs.StringVar(&o.NodeTokenFile, "node-token-file", "/var/run/secrets/kubernetes.io/serviceaccount/token", "keeplog-api's bearer token towards the node plugins (re-read at each request: projected tokens rotate)")
	fs.StringSliceVar(&o.ServiceDNS, "service-dns", nil, "DNS names for a self-signed serving certificate when --tls-cert-file is not given")
}

// Validate checks the flags.
func (o *Options) Validate() error {
	var errs []error
	errs = append(errs, o.Serving.Validate()...)
	errs = append(errs, o.Authn.Validate()...)
	errs = append(errs, o.Authz.Validate()...)
	for _, e := range o.NodeEndpoints {
		if _, err := parseEndpoint(e); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := labels.Parse(o.NodeSelector); err != nil {
		errs = append(errs, fmt.Errorf("--node-selector: %w", err))
	}
	if o.NodeTokenFile == "" {
		errs = append(errs, errors.New("--node-token-file is required"))
	}
	return errors.Join(errs...)
}

// parseEndpoint reads <node>=<URL>; plain http only on a loopback host (a token never travels in clear).
func parseEndpoint(s string) (endpoint, error) {
	name, raw, ok := strings.Cut(s, "=")
	u, err := url.Parse(raw)
	if !ok || name == "" || err != nil || u.Host == "" {
		return endpoint{}, fmt.Errorf("--node-endpoint %q: want <node>=https://<host>:<port>", s)
	}
	ip := net.ParseIP(u.Hostname())
	if u.Scheme != "https" && (u.Scheme != "http" || ip == nil || !ip.IsLoopback()) {
		return endpoint{}, fmt.Errorf("--node-endpoint %q: https, or http on a loopback address only", s)
	}
	return endpoint{name: name, url: raw}, nil
}

type endpoint struct{ name, url string }
