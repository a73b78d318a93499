package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// craneVersion is the crane CLI the test builds: go-containerregistry's, the version go.mod requires.
const craneVersion = "v0.22.1"

// installCrane builds the crane CLI with `go install ...@craneVersion` (Go module proxy and build cache; it is a
// go-containerregistry command, not a dependency of this module) and returns a runner for it.
func installCrane(t *testing.T) runner {
	t.Helper()
	bin := t.TempDir()
	cmd := exec.Command("go", "install", "github.com/google/go-containerregistry/cmd/crane@"+craneVersion)
	cmd.Dir = bin // outside this module: pkg@version installs the command's own module
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install crane@%s: %v\n%s", craneVersion, err, b)
	}
	return func(t *testing.T, args ...string) string {
		t.Helper()
		b, err := exec.Command(filepath.Join(bin, "crane"), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("crane %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
}

// cranePushThenDockerPull: what the README says to run, `crane push bin/image/oci REF` (the crane CLI, built
// here), pushes the layout's multi-platform index to a registry (go-containerregistry's, on loopback) under the
// digest crane prints, and `crane push` of each docker-archive pushes that platform's image with its config; a
// Docker engine (20.10, started by the test) then pulls REF for linux/amd64 and for linux/arm64 and gets each
// platform's image (its ID the docker-archive's config digest). `crane push --index` of the layout would push the
// layout's own index.json, an index of that index, which dockerd 20.10 refuses ("no matching manifest for
// linux/amd64"): the README does not say --index.
func cranePushThenDockerPull(t *testing.T, docker runner, im engineImages) {
	crane := installCrane(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	repo := strings.TrimPrefix(srv.URL, "http://") + "/ops/keeplog" // 127.0.0.0/8: dockerd speaks plain HTTP to it
	idx, err := layoutIndex(filepath.Join(im.Dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got := lastLine(crane(t, "push", filepath.Join(im.Dir, "oci"), repo+":v1")); got != repo+"@"+want.String() {
		t.Fatalf("crane push of the OCI layout printed %q, want %s@%s (its index)", got, repo, want)
	}
	for _, arch := range []string{runtime.GOARCH, otherArch()} {
		a := im.archive(t, arch)
		crane(t, "push", a.Path, repo+":"+arch)
		cfg := crane(t, "config", repo+":"+arch)
		if got := sha256Hex(cfg); "sha256:"+got != a.ID {
			t.Errorf("crane push of %s: the registry's config is sha256:%s, the archive's %s", a.Path, got, a.ID)
		}
		docker(t, "pull", "--platform", "linux/"+arch, repo+":v1")
		got := inspectDocker(t, docker, repo+":v1")
		if got.ID != a.ID || got.Architecture != arch || !slices.Equal(got.RootFS.Layers, a.DiffIDs) {
			t.Errorf("docker pull --platform linux/%s %s:v1 gave %+v, want ID %s, layers %v", arch, repo, got, a.ID, a.DiffIDs)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
