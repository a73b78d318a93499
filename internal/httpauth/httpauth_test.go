package httpauth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

// fakeAPI answers TokenReviews from tokens (token → user) and SubjectAccessReviews from allowed (user → paths),
// and counts the calls.
type fakeAPI struct {
	tokens  map[string]string
	allowed map[string]string // user → the one path it may get
	fail    bool
	calls   int
	lastSAR authzv1.SubjectAccessReviewSpec
}

func (f *fakeAPI) guard(t *testing.T, clk *clocktesting.FakeClock) *Guard {
	t.Helper()
	cs := fake.NewSimpleClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.calls++
		if f.fail {
			return true, nil, errors.New("connection refused")
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
		if user, ok := f.tokens[tr.Spec.Token]; ok {
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: user,
				Groups: []string{"system:serviceaccounts"}, Extra: map[string]authnv1.ExtraValue{"k": {"v"}}}}
		}
		return true, tr, nil
	})
	cs.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.calls++
		sar := a.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview)
		f.lastSAR = sar.Spec
		na := sar.Spec.NonResourceAttributes
		sar.Status.Allowed = na != nil && na.Verb == "get" && f.allowed[sar.Spec.User] == na.Path
		return true, sar, nil
	})
	g, err := New(Config{}, Deps{Tokens: cs.AuthenticationV1().TokenReviews(), Access: cs.AuthorizationV1().SubjectAccessReviews(), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func get(h http.Handler, path, auth string) int {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

func TestProtect(t *testing.T) {
	api := &fakeAPI{tokens: map[string]string{"good": "system:serviceaccount:monitoring:prometheus", "other": "bob"},
		allowed: map[string]string{"system:serviceaccount:monitoring:prometheus": "/metrics"}}
	h := api.guard(t, clocktesting.NewFakeClock(time.Unix(0, 0))).Protect(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/metrics", "", http.StatusUnauthorized},
		{"/metrics", "Basic Zm9vOmJhcg==", http.StatusUnauthorized},
		{"/metrics", "Bearer ", http.StatusUnauthorized},
		{"/metrics", "Bearer forged", http.StatusUnauthorized},
		{"/metrics", "Bearer other", http.StatusForbidden},
		{"/other", "Bearer good", http.StatusForbidden},
		{"/metrics", "Bearer good", http.StatusOK},
		{"/metrics", "bearer good", http.StatusOK},
	} {
		if got := get(h, tc.path, tc.auth); got != tc.want {
			t.Errorf("GET %s with %q: %d, want %d", tc.path, tc.auth, got, tc.want)
		}
	}
	if api.lastSAR.Groups[0] != "system:serviceaccounts" || api.lastSAR.Extra["k"][0] != "v" {
		t.Errorf("the SubjectAccessReview does not carry the user's groups and extra: %+v", api.lastSAR)
	}
}

// TestDecisionsAreCachedThenAskedAgain: a second scrape within the TTL costs no API call; after the TTL the API
// server is asked again (a revoked binding takes effect), and a refusal is kept for the shorter DenyTTL.
func TestDecisionsAreCachedThenAskedAgain(t *testing.T) {
	api := &fakeAPI{tokens: map[string]string{"good": "u", "other": "v"}, allowed: map[string]string{"u": "/metrics"}}
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	h := api.guard(t, clk).Protect(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	get(h, "/metrics", "Bearer good")
	get(h, "/metrics", "Bearer good")
	if api.calls != 2 {
		t.Fatalf("%d API calls for two scrapes within the TTL, want 2 (one TokenReview, one SubjectAccessReview)", api.calls)
	}
	delete(api.allowed, "u")
	clk.Step(time.Minute)
	if got := get(h, "/metrics", "Bearer good"); got != http.StatusForbidden {
		t.Errorf("after the TTL with the permission revoked: %d, want 403", got)
	}
	api.allowed["u"] = "/metrics"
	clk.Step(9 * time.Second)
	if got := get(h, "/metrics", "Bearer good"); got != http.StatusForbidden {
		t.Errorf("within DenyTTL: %d, want the cached 403", got)
	}
	clk.Step(time.Second)
	if got := get(h, "/metrics", "Bearer good"); got != http.StatusOK {
		t.Errorf("after DenyTTL with the permission back: %d, want 200", got)
	}
}

// TestAPIErrorIsUnavailableAndNotCached: when the review cannot be made the answer is 503, and the next request
// asks again.
func TestAPIErrorIsUnavailableAndNotCached(t *testing.T) {
	api := &fakeAPI{tokens: map[string]string{"good": "u"}, allowed: map[string]string{"u": "/metrics"}, fail: true}
	h := api.guard(t, clocktesting.NewFakeClock(time.Unix(0, 0))).Protect(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	if got := get(h, "/metrics", "Bearer good"); got != http.StatusServiceUnavailable {
		t.Errorf("API down: %d, want 503", got)
	}
	api.fail = false
	if got := get(h, "/metrics", "Bearer good"); got != http.StatusOK {
		t.Errorf("API back: %d, want 200 (the failure was not cached)", got)
	}
}
