package dump

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/keeplog/keeplog/pkg/kube"
)

// The exec protocol itself is client-go's (tools/remotecommand); the e2e runs dump-exec through a real API server.
// Here: what keeplog adds — the request it makes, the API's refusal in the error, the output bound.

func TestAPIExecerRequestAndRefusal(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+" auth="+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"p\" is forbidden: User \"keeplog\" cannot create resource \"pods/exec\"","reason":"Forbidden","code":403}`))
	}))
	t.Cleanup(srv.Close)
	cfg := &rest.Config{Host: srv.URL, BearerToken: "tok"}
	kc, err := kube.NewClients(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := NewAPIExecer(cfg, kc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ex.Exec(context.Background(), "ns", "p", "app", []string{"sh", "-c", "jcmd 1 GC.heap_dump /logs/app/x.hprof"})
	if err == nil || !strings.Contains(err.Error(), "exec in ns/p container app") || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("refusal: %v; want the pod, the container and the API's reason", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("no request reached the API server")
	}
	want := "/api/v1/namespaces/ns/pods/p/exec?command=sh&command=-c&command=jcmd+1+GC.heap_dump+%2Flogs%2Fapp%2Fx.hprof&container=app&stderr=true&stdout=true auth=Bearer tok"
	for _, s := range seen {
		if !strings.HasSuffix(s, want) {
			t.Errorf("request %q, want it to end with %q", s, want)
		}
	}
}

func TestLimitedBuffer(t *testing.T) {
	b := &limitedBuffer{max: 10}
	for _, s := range []string{"0123", "456789ab", "cd"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v: must accept everything (a command must not block on its output)", s, n, err)
		}
	}
	if b.String() != "0123456789" {
		t.Fatalf("kept %q, want the first 10 bytes", b.String())
	}
}
