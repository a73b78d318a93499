package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// crossBuild compiles a tiny static Go program for linux/arch (CGO_ENABLED=0 GOARCH=arch, as `make image` builds
// keeplog) and returns its path.
func crossBuild(t *testing.T, arch string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "bin-"+arch)
	cmd := exec.Command("go", "build", "-o", out, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GO111MODULE=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build GOARCH=%s: %v\n%s", arch, err, b)
	}
	return out
}

// fakeRootfs is a base with bin/mount and bin/umount for arch (the tiny binary stands in for util-linux's).
func fakeRootfs(t *testing.T, bin string) string {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"mount", "umount"} {
		if err := os.WriteFile(filepath.Join(dir, "bin", n), data, 0o4755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("mount", filepath.Join(dir, "bin", "mnt")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestWriteThenVerifyBothPlatforms writes the amd64 and arm64 images from cross-compiled binaries and reads them
// back: the arm64 image's entrypoint is an arm64 ELF (debug/elf), the docker-archive is tagged with the reference,
// and the OCI layout's index.json names one index with both platforms.
func TestWriteThenVerifyBothPlatforms(t *testing.T) {
	out := t.TempDir()
	const ref = "registry.example/keeplog/keeplog:test"
	var specs []spec
	for _, arch := range []string{"amd64", "arm64"} {
		bin := crossBuild(t, arch)
		specs = append(specs, spec{OS: "linux", Arch: arch, Binary: bin, APIBinary: bin, Rootfs: fakeRootfs(t, bin)})
	}
	if err := write(writeConfig{Out: out, Ref: ref, Version: "test", Platforms: specs}); err != nil {
		t.Fatal(err)
	}
	if err := verify(out, ref, []string{"linux/amd64", "linux/arm64"}); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(ref)
	img, err := tarball.ImageFromPath(filepath.Join(out, "keeplog-linux-arm64.tar"), &tag)
	if err != nil {
		t.Fatal(err)
	}
	files, err := imageFiles(img, binaryPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkELF(files[binaryPath], "arm64", true); err != nil {
		t.Errorf("arm64 image's keeplog: %v", err)
	}
	if checkELF(files[binaryPath], "amd64", false) == nil {
		t.Error("the arm64 image's keeplog passes as an amd64 ELF")
	}
	cfg, err := img.ConfigFile()
	if err != nil || len(cfg.RootFS.DiffIDs) != 2 {
		t.Errorf("config %+v, %v: want two layers' diff IDs (base, binary)", cfg, err)
	}
	manifest, err := os.ReadFile(filepath.Join(out, "keeplog-linux-arm64.tar"))
	if err != nil || !strings.Contains(string(manifest), `"RepoTags":["`+ref+`"]`) {
		t.Errorf("docker-archive manifest.json has no RepoTags [%s]", ref)
	}
	var index struct {
		Manifests []struct {
			MediaType   string
			Annotations map[string]string
		}
	}
	data, err := os.ReadFile(filepath.Join(out, "oci", "index.json"))
	if err != nil || json.Unmarshal(data, &index) != nil || len(index.Manifests) != 1 ||
		index.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "test" {
		t.Errorf("oci/index.json: %s %v", data, err)
	}
}

// TestWriteRefusesABinaryOfAnotherMachine: an arm64 binary given as the amd64 platform's is refused before
// anything is written, and so is a dynamically linked one (a program interpreter), which would not start on the
// image's base.
func TestWriteRefusesABinaryOfAnotherMachine(t *testing.T) {
	arm := crossBuild(t, "arm64")
	err := write(writeConfig{Out: t.TempDir(), Ref: "x/y:z", Platforms: []spec{{OS: "linux", Arch: "amd64", Binary: arm, Rootfs: t.TempDir()}}})
	if err == nil || !strings.Contains(err.Error(), "EM_AARCH64") {
		t.Fatalf("amd64 image from an arm64 binary: %v", err)
	}
	sh, err := os.ReadFile("/bin/sh") // Debian's dash, dynamically linked
	if err != nil {
		t.Skip(err)
	}
	if err := checkELF(sh, "amd64", true); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("/bin/sh as a static binary: %v", err)
	}
}

// TestVerifyCatchesAMislabelledImage: an image whose configuration says arm64 but whose keeplog is an amd64 ELF
// (what a GOARCH mistake in the build would make) fails verification.
func TestVerifyCatchesAMislabelledImage(t *testing.T) {
	amd := crossBuild(t, "amd64")
	data, err := os.ReadFile(amd)
	if err != nil {
		t.Fatal(err)
	}
	var layerEntries []entry
	for _, p := range []string{binaryPath, apiBinaryPath, "bin/mount", "bin/umount"} {
		layerEntries = append(layerEntries, entry{Name: p, Mode: 0o755, Type: '0', Data: data})
	}
	l, err := layerFrom(layerEntries, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.ConfigFile(empty.Image, imageConfig(spec{OS: "linux", Arch: "arm64"}, "x", time.Unix(0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, l); err != nil {
		t.Fatal(err)
	}
	if err := checkImage(img, "linux", "arm64"); err == nil || !strings.Contains(err.Error(), "EM_X86_64") {
		t.Errorf("arm64 image with an amd64 keeplog: %v", err)
	}
	if err := checkImage(img, "linux", "amd64"); err == nil || !strings.Contains(err.Error(), "config says linux/arm64") {
		t.Errorf("arm64 config checked as amd64: %v", err)
	}
}

// TestPushToARegistry: what `crane push` does with each output (crane.Load of a docker-archive; the OCI layout's
// one nested index, as `crane push DIR REF` does) is accepted by a registry (go-containerregistry's in-memory one on
// loopback), and the pushed index serves both platforms. (The crane CLI itself: TestEnginesLoadBothArchitectures.)
func TestPushToARegistry(t *testing.T) {
	out := t.TempDir()
	var specs []spec
	for _, arch := range []string{"amd64", "arm64"} {
		bin := crossBuild(t, arch)
		specs = append(specs, spec{OS: "linux", Arch: arch, Binary: bin, APIBinary: bin, Rootfs: fakeRootfs(t, bin)})
	}
	if err := write(writeConfig{Out: out, Ref: "ghcr.io/keeplog/keeplog:test", Version: "test", Platforms: specs}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := crane.Load(filepath.Join(out, "keeplog-linux-arm64.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if err := crane.Push(img, host+"/keeplog/keeplog:arm64"); err != nil {
		t.Fatalf("push the docker-archive: %v", err)
	}
	idx, err := layoutIndex(filepath.Join(out, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/keeplog/keeplog:test")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatalf("push the OCI index: %v", err)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		got, err := crane.Pull(ref.String(), crane.WithPlatform(&v1.Platform{OS: "linux", Architecture: arch}))
		if err != nil {
			t.Fatal(err)
		}
		if err := checkImage(got, "linux", arch); err != nil {
			t.Errorf("pulled %s back: %v", arch, err)
		}
	}
}

// TestVerifyNeedsKeeplogAPI: an image without /usr/local/bin/keeplog-api (the chart's keeplog-api Deployment's
// command) fails verification, and write refuses an API binary of another machine.
func TestVerifyNeedsKeeplogAPI(t *testing.T) {
	amd := crossBuild(t, "amd64")
	data, err := os.ReadFile(amd)
	if err != nil {
		t.Fatal(err)
	}
	var layerEntries []entry
	for _, p := range []string{binaryPath, "bin/mount", "bin/umount"} {
		layerEntries = append(layerEntries, entry{Name: p, Mode: 0o755, Type: '0', Data: data})
	}
	l, err := layerFrom(layerEntries, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.ConfigFile(empty.Image, imageConfig(spec{OS: "linux", Arch: "amd64"}, "x", time.Unix(0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, l); err != nil {
		t.Fatal(err)
	}
	if err := checkImage(img, "linux", "amd64"); err == nil || !strings.Contains(err.Error(), apiBinaryPath) {
		t.Errorf("an image without keeplog-api: %v", err)
	}
	arm := crossBuild(t, "arm64")
	err = write(writeConfig{Out: t.TempDir(), Ref: "x/y:z", Platforms: []spec{{OS: "linux", Arch: "amd64", Binary: amd,
		APIBinary: arm, Rootfs: fakeRootfs(t, amd)}}})
	if err == nil || !strings.Contains(err.Error(), "EM_AARCH64") {
		t.Errorf("amd64 image with an arm64 keeplog-api: %v", err)
	}
}
