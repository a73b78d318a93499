// Package httpauth guards keeplog's HTTP endpoints other than /healthz with Kubernetes authentication and
// authorization, as kubelet and kube-rbac-proxy guard theirs: the request's bearer token is checked with a TokenReview,
// and the user it names is asked about with a SubjectAccessReview on the non-resource URL (verb "get" for GET on
// /metrics). The node plugin runs with hostNetwork, so its port is open on every address of the node; without this,
// anyone who reaches a node reads every pod's names, volumes and upload activity from /metrics.
//
// Decisions are cached for a short time per token and request (a scrape every 15 s would otherwise cost two API
// calls); a failed review (the API server unreachable) is answered 503 and not cached.
package httpauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
)

// Deps are the guard's side effects: the two review APIs and the clock of the cache.
type Deps struct {
	Tokens TokenReviews
	Access SubjectAccessReviews
	Clock  clock.PassiveClock
}

// TokenReviews creates TokenReviews (authentication.k8s.io/v1).
type TokenReviews interface {
	Create(ctx context.Context, review *authnv1.TokenReview, opts metav1.CreateOptions) (*authnv1.TokenReview, error)
}

// SubjectAccessReviews creates SubjectAccessReviews (authorization.k8s.io/v1).
type SubjectAccessReviews interface {
	Create(ctx context.Context, review *authzv1.SubjectAccessReview, opts metav1.CreateOptions) (*authzv1.SubjectAccessReview, error)
}

// Config bounds the cache. Zero values take the defaults.
type Config struct {
	AllowTTL   time.Duration // how long an allowed decision is reused (default 1m)
	DenyTTL    time.Duration // how long a refusal is reused (default 10s)
	MaxEntries int           // the cache is emptied when it reaches this size (default 1024)
}

// Guard decides requests; safe for concurrent use.
type Guard struct {
	cfg  Config
	deps Deps

	mu    sync.Mutex
	cache map[[32]byte]decision
}

// decision is a review's answer: the HTTP status to give (0: allowed) and until when it holds.
type decision struct {
	status  int
	reason  string
	expires time.Time
}

// New returns a Guard; both review clients and the clock are required.
func New(cfg Config, deps Deps) (*Guard, error) {
	if deps.Tokens == nil || deps.Access == nil || deps.Clock == nil {
		return nil, errors.New("httpauth: TokenReview and SubjectAccessReview clients and a clock are required")
	}
	if cfg.AllowTTL <= 0 {
		cfg.AllowTTL = time.Minute
	}
	if cfg.DenyTTL <= 0 {
		cfg.DenyTTL = 10 * time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 1024
	}
	return &Guard{cfg: cfg, deps: deps, cache: map[[32]byte]decision{}}, nil
}

// Protect serves next only to requests whose bearer token belongs to a user allowed the request's verb on its path:
// 401 without a valid token, 403 when not allowed, 503 when the API server could not be asked.
func (g *Guard) Protect(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="keeplog"`)
			http.Error(w, "Unauthorized: a bearer token is required", http.StatusUnauthorized)
			return
		}
		d, err := g.decide(r.Context(), token, verb(r.Method), r.URL.Path)
		if err != nil {
			http.Error(w, "cannot check the request with the API server: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if d.status != 0 {
			http.Error(w, d.reason, d.status)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearer is the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	return token, ok && strings.EqualFold(scheme, "bearer") && token != ""
}

// verb maps an HTTP method to the API server's verb for non-resource requests.
func verb(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead:
		return "get"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	default:
		return strings.ToLower(method)
	}
}

// decide answers from the cache or asks the API server and caches the answer.
func (g *Guard) decide(ctx context.Context, token, verb, path string) (decision, error) {
	key := sha256.Sum256([]byte(verb + "\x00" + path + "\x00" + token))
	now := g.deps.Clock.Now()
	g.mu.Lock()
	d, ok := g.cache[key]
	g.mu.Unlock()
	if ok && now.Before(d.expires) {
		return d, nil
	}
	d, err := g.review(ctx, token, verb, path)
	if err != nil {
		return decision{}, err
	}
	d.expires = now.Add(g.cfg.AllowTTL)
	if d.status != 0 {
		d.expires = now.Add(g.cfg.DenyTTL)
	}
	g.mu.Lock()
	if len(g.cache) >= g.cfg.MaxEntries {
		clear(g.cache)
	}
	g.cache[key] = d
	g.mu.Unlock()
	return d, nil
}

// review is one TokenReview and, for an authenticated user, one SubjectAccessReview.
func (g *Guard) review(ctx context.Context, token, verb, path string) (decision, error) {
	tr, err := g.deps.Tokens.Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return decision{}, fmt.Errorf("TokenReview: %w", err)
	}
	if !tr.Status.Authenticated {
		return decision{status: http.StatusUnauthorized, reason: "Unauthorized: the token is not valid"}, nil
	}
	u := tr.Status.User
	extra := make(map[string]authzv1.ExtraValue, len(u.Extra))
	for k, v := range u.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	sar, err := g.deps.Access.Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
		NonResourceAttributes: &authzv1.NonResourceAttributes{Path: path, Verb: verb},
	}}, metav1.CreateOptions{})
	if err != nil {
		return decision{}, fmt.Errorf("SubjectAccessReview: %w", err)
	}
	if !sar.Status.Allowed {
		return decision{status: http.StatusForbidden,
			reason: fmt.Sprintf("Forbidden: user %q may not %s %s", u.Username, verb, path)}, nil
	}
	return decision{}, nil
}
