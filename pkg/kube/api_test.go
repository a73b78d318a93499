package kube

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// api is a tiny API server: it records each request and answers the JSON the test put at "METHOD path" (else 404
// with a Status, as kube-apiserver does).
type api struct {
	srv *httptest.Server

	mu      sync.Mutex
	answers map[string]string
	seen    []request
	arrived chan struct{}
}

type request struct {
	key, query, accept, contentType string
	body                            []byte
}

func newAPI(t *testing.T) *api {
	a := &api{answers: map[string]string{}, arrived: make(chan struct{}, 100)}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		key := r.Method + " " + r.URL.Path
		a.mu.Lock()
		a.seen = append(a.seen, request{key: key, query: r.URL.RawQuery, accept: r.Header.Get("Accept"),
			contentType: r.Header.Get("Content-Type"), body: body})
		answer, ok := a.answers[key]
		a.mu.Unlock()
		a.arrived <- struct{}{}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case ok:
			_, _ = io.WriteString(w, answer)
		case r.Method == http.MethodPost:
			w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write(body) // created as sent
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"`+
				strings.ReplaceAll(r.URL.Path, `"`, ``)+` not found"}`)
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *api) answer(key, json string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.answers[key] = json
}

func (a *api) clients(t *testing.T) *Clients {
	t.Helper()
	c, err := NewClients(&rest.Config{Host: a.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wait returns the first request to key, waiting up to 10 s for it.
func (a *api) wait(t *testing.T, key string) request {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		a.mu.Lock()
		for _, r := range a.seen {
			if r.key == key {
				a.mu.Unlock()
				return r
			}
		}
		a.mu.Unlock()
		select {
		case <-a.arrived:
		case <-deadline:
			t.Fatalf("no request %s; seen %+v", key, a.requests())
		}
	}
}

func (a *api) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, r := range a.seen {
		out = append(out, r.key+"?"+r.query)
	}
	return out
}
