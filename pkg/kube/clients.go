package kube

import (
	"errors"
	"fmt"
	"net/http"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// Clients are REST clients of the only API groups keeplog talks to: core/v1 (pods, PVs, nodes, namespaces, events,
// replication controllers), apps/v1 and batch/v1 (a pod's owner chain), coordination/v1 (Leases) and
// authentication/v1 and authorization/v1 (TokenReviews and SubjectAccessReviews for /metrics). They are built on
// keeplog's own scheme of these groups (scheme.go), not on client-go's typed clients, each of which imports
// client-go's kubernetes/scheme and so links and registers every API group. The resource clients they hand out are
// client-go's generic ones (gentype), with the methods and behaviour of the typed clients (protobuf where those
// prefer it), so the interfaces callers define are satisfied by a fake clientset's clients in tests too.
type Clients struct {
	codecs                                 *codecs
	core, apps, batch, coord, authn, authz *rest.RESTClient
}

// NewClients builds the clients from cfg as kubernetes.NewForConfig builds its groups: one HTTP client (one
// connection pool) for all, client-go's default user agent when cfg has none, and one rate limiter shared by all
// groups when cfg sets a QPS (else each group has client-go's default one, as in the clientset).
func NewClients(cfg *rest.Config) (*Clients, error) {
	shared := *cfg
	if shared.UserAgent == "" {
		shared.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	if shared.RateLimiter == nil && shared.QPS > 0 {
		if shared.Burst <= 0 {
			return nil, errors.New("a QPS without a positive burst")
		}
		shared.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(shared.QPS, shared.Burst)
	}
	cfg = &shared
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("HTTP client for %s: %w", cfg.Host, err)
	}
	cs, err := newCodecs()
	if err != nil {
		return nil, fmt.Errorf("scheme: %w", err)
	}
	c := &Clients{codecs: cs}
	for _, g := range []struct {
		client  **rest.RESTClient
		gv      schema.GroupVersion
		apiPath string
	}{
		{&c.core, corev1.SchemeGroupVersion, "/api"},
		{&c.apps, appsv1.SchemeGroupVersion, "/apis"},
		{&c.batch, batchv1.SchemeGroupVersion, "/apis"},
		{&c.coord, coordinationv1.SchemeGroupVersion, "/apis"},
		{&c.authn, authnv1.SchemeGroupVersion, "/apis"},
		{&c.authz, authzv1.SchemeGroupVersion, "/apis"},
	} {
		if *g.client, err = c.restClient(cfg, hc, g.gv, g.apiPath); err != nil {
			return nil, fmt.Errorf("%s client: %w", g.gv, err)
		}
	}
	return c, nil
}

// restClient is the REST client of one group version, configured as client-gen's setConfigDefaults configures it.
func (c *Clients) restClient(cfg *rest.Config, hc *http.Client, gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
	g := *cfg
	g.GroupVersion = &gv
	g.APIPath = apiPath
	g.NegotiatedSerializer = rest.CodecFactoryForGeneratedClient(c.codecs.scheme, c.codecs.factory).WithoutConversion()
	return rest.RESTClientForConfigAndClient(&g, hc)
}
