package dump

import (
	"context"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// serverFrame is an unmasked frame, as a server sends it.
func serverFrame(op byte, fin bool, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	f := []byte{b0}
	switch {
	case len(payload) < 126:
		f = append(f, byte(len(payload)))
	case len(payload) < 1<<16:
		f = append(f, 126, 0, 0)
		binary.BigEndian.PutUint16(f[2:], uint16(len(payload)))
	default:
		f = append(f, 127, 0, 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint64(f[2:], uint64(len(payload)))
	}
	return append(f, payload...)
}

// fakeExecServer answers the exec upgrade like kube-apiserver and sends frames.
func fakeExecServer(t *testing.T, frames ...[]byte) (*httptest.Server, *string) {
	var seen string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.URL.Path + "?" + r.URL.RawQuery + " protocols=" + r.Header.Get("Sec-WebSocket-Protocol") +
			" auth=" + r.Header.Get("Authorization")
		if r.URL.Query().Get("container") == "forbidden" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"p\" is forbidden: User \"keeplog\" cannot create resource \"pods/exec\"","reason":"Forbidden","code":403}`))
			return
		}
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Protocol: v5.channel.k8s.io\r\nSec-WebSocket-Accept: " + acceptKey(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n")
		for _, f := range frames {
			_, _ = rw.Write(f)
		}
		_ = rw.Flush()
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func TestAPIExecer(t *testing.T) {
	big := strings.Repeat("x", 70000)
	srv, seen := fakeExecServer(t,
		serverFrame(0x9, true, []byte("ping")),
		serverFrame(0x2, false, []byte("\x01dumping ")), serverFrame(0x0, true, []byte("heap\n")), // fragmented
		serverFrame(0x2, true, []byte("\x02a warning\n")),
		serverFrame(0x2, true, []byte("\x03"+`{"metadata":{},"status":"Success"}`)),
		serverFrame(0x8, true, []byte{0x03, 0xe8}))
	ex, err := NewAPIExecer(&rest.Config{Host: srv.URL, BearerToken: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := ex.Exec(context.Background(), "ns", "p", "app", []string{"sh", "-c", "jcmd 1 GC.heap_dump /logs/app/x.hprof"})
	if err != nil || out != "dumping heap\na warning\n" {
		t.Fatalf("Exec = %q, %v", out, err)
	}
	want := "/api/v1/namespaces/ns/pods/p/exec?command=sh&command=-c&command=jcmd+1+GC.heap_dump+%2Flogs%2Fapp%2Fx.hprof&container=app&stderr=true&stdout=true protocols=v5.channel.k8s.io, v4.channel.k8s.io auth=Bearer tok"
	if *seen != want {
		t.Fatalf("request\n%s\nwant\n%s", *seen, want)
	}

	// Non-zero exit; a large output is cut at 64 KiB.
	srv, _ = fakeExecServer(t,
		serverFrame(0x2, true, []byte("\x01"+big)),
		serverFrame(0x2, true, []byte("\x03"+`{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c false], exit code 2","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"2"}]}}`)))
	ex, _ = NewAPIExecer(&rest.Config{Host: srv.URL})
	out, err = ex.Exec(context.Background(), "ns", "p", "app", []string{"false"})
	if err == nil || !strings.Contains(err.Error(), "exec in ns/p container app: the command exited with code 2") || len(out) != maxExecOutput {
		t.Fatalf("non-zero exit: %v, %d bytes", err, len(out))
	}

	// No status at all (the connection dropped).
	srv, _ = fakeExecServer(t, serverFrame(0x2, true, []byte("\x01partial")))
	ex, _ = NewAPIExecer(&rest.Config{Host: srv.URL})
	if _, err := ex.Exec(context.Background(), "ns", "p", "app", []string{"x"}); err == nil || !strings.Contains(err.Error(), "without an exit status") {
		t.Fatalf("no status: %v", err)
	}

	// RBAC refusal: the API's message.
	if _, err := ex.Exec(context.Background(), "ns", "p", "forbidden", []string{"x"}); err == nil ||
		!strings.Contains(err.Error(), `403 Forbidden: pods "p" is forbidden: User "keeplog" cannot create resource "pods/exec"`) {
		t.Fatalf("forbidden: %v", err)
	}
}
