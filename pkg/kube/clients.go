package kube

import (
	"errors"
	"fmt"

	appsv1client "k8s.io/client-go/kubernetes/typed/apps/v1"
	authnv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authzv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	batchv1client "k8s.io/client-go/kubernetes/typed/batch/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// Clients are the typed clients of the only API groups keeplog talks to: core/v1 (pods, PVs, nodes, events,
// replication controllers), apps/v1 and batch/v1 (a pod's owner chain), coordination/v1 (Leases) and
// authentication/v1 and authorization/v1 (TokenReviews and SubjectAccessReviews for /metrics). keeplog does
// not use client-go's full clientset (kubernetes.Interface), which builds a client, and links the code, of every
// API group and the discovery client; the methods have the clientset's names, so a fake clientset satisfies the
// same interfaces in tests.
//
// A nil *Clients (no API access) answers nil interfaces, so callers can hand its clients on and test them for nil.
type Clients struct {
	core         corev1client.CoreV1Interface
	apps         appsv1client.AppsV1Interface
	batch        batchv1client.BatchV1Interface
	coordination coordinationv1client.CoordinationV1Interface
	authn        authnv1client.AuthenticationV1Interface
	authz        authzv1client.AuthorizationV1Interface
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
	c := &Clients{}
	if c.core, err = corev1client.NewForConfigAndClient(cfg, hc); err != nil {
		return nil, fmt.Errorf("core/v1 client: %w", err)
	}
	if c.apps, err = appsv1client.NewForConfigAndClient(cfg, hc); err != nil {
		return nil, fmt.Errorf("apps/v1 client: %w", err)
	}
	if c.batch, err = batchv1client.NewForConfigAndClient(cfg, hc); err != nil {
		return nil, fmt.Errorf("batch/v1 client: %w", err)
	}
	if c.coordination, err = coordinationv1client.NewForConfigAndClient(cfg, hc); err != nil {
		return nil, fmt.Errorf("coordination/v1 client: %w", err)
	}
	if c.authn, err = authnv1client.NewForConfigAndClient(cfg, hc); err != nil {
		return nil, fmt.Errorf("authentication/v1 client: %w", err)
	}
	if c.authz, err = authzv1client.NewForConfigAndClient(cfg, hc); err != nil {
		return nil, fmt.Errorf("authorization/v1 client: %w", err)
	}
	return c, nil
}

// CoreV1 is the core/v1 client; nil for a nil *Clients.
func (c *Clients) CoreV1() corev1client.CoreV1Interface {
	if c == nil {
		return nil
	}
	return c.core
}

// AppsV1 is the apps/v1 client; nil for a nil *Clients.
func (c *Clients) AppsV1() appsv1client.AppsV1Interface {
	if c == nil {
		return nil
	}
	return c.apps
}

// BatchV1 is the batch/v1 client; nil for a nil *Clients.
func (c *Clients) BatchV1() batchv1client.BatchV1Interface {
	if c == nil {
		return nil
	}
	return c.batch
}

// CoordinationV1 is the coordination/v1 client; nil for a nil *Clients.
func (c *Clients) CoordinationV1() coordinationv1client.CoordinationV1Interface {
	if c == nil {
		return nil
	}
	return c.coordination
}

// AuthenticationV1 is the authentication/v1 client (TokenReviews); nil for a nil *Clients.
func (c *Clients) AuthenticationV1() authnv1client.AuthenticationV1Interface {
	if c == nil {
		return nil
	}
	return c.authn
}

// AuthorizationV1 is the authorization/v1 client (SubjectAccessReviews); nil for a nil *Clients.
func (c *Clients) AuthorizationV1() authzv1client.AuthorizationV1Interface {
	if c == nil {
		return nil
	}
	return c.authz
}
