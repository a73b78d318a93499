package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// shippedTags are the build tags of the shipped binary (make build and the Dockerfile).
const shippedTags = "grpcnotrace"

// TestShippedBinaryLinksNoTemplates keeps the binary small. text/template calls methods by name (reflection), which
// makes the linker keep every exported method of every type the binary has, and client-go's API types have
// thousands: 11 MB of the binary and 5 MiB of idle RSS. gRPC links it through golang.org/x/net/trace unless built with
// -tags grpcnotrace; a new import of text/template or html/template anywhere brings it back. That only the API
// groups keeplog uses are linked (no typed client, clientset, informers or leaderelection) is test/arch's check.
func TestShippedBinaryLinksNoTemplates(t *testing.T) {
	for _, f := range []string{"Makefile", "Dockerfile"} {
		data, err := os.ReadFile(filepath.Join(repo, f))
		if err != nil {
			t.Fatal(err)
		}
		build := regexp.MustCompile(`(?m)^.* build .*\./cmd/keeplog$`).FindString(string(data))
		if !strings.Contains(build, "-tags "+shippedTags+" ") {
			t.Errorf("%s builds keeplog without -tags %s: %q", f, shippedTags, build)
		}
	}
	cmd := exec.Command("go", "list", "-deps", "-tags", shippedTags, "./cmd/keeplog")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/keeplog: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		switch pkg {
		case "text/template", "html/template", "golang.org/x/net/trace":
			t.Errorf("cmd/keeplog links %s (go mod why -m, or go list -deps -f to find who imports it)", pkg)
		}
	}
}
