package main

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// TestNodeClient: the nodes' CA is trusted and nothing else; --node-server-name is the name checked instead of the
// node's IP (httptest's certificate holds example.com and 127.0.0.1).
func TestNodeClient(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ca, name string
		ok       bool
	}{{ca, "", true}, {ca, "example.com", true}, {ca, "keeplog-node.other", false}, {"", "", false}} {
		hc, err := nodeClient(tc.ca, tc.name)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("CA %q, server name %q: %v, want ok %v", tc.ca, tc.name, err, tc.ok)
		}
	}
	if _, err := nodeClient(filepath.Join(t.TempDir(), "none"), ""); err == nil {
		t.Error("a missing CA file was accepted")
	}
}
