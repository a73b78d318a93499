package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPodmanLoadsBothFormats: what `make image` writes is what a node's tools load. podman (Debian's, installed by
// hack/install-deps.sh; no daemon) loads the docker-archive with `podman load` and copies the OCI layout with
// `podman pull oci:`, and both name the image's architecture. (containerd's `ctr images import` is the chart e2e's;
// a registry push is TestPushToARegistry.)
func TestPodmanLoadsBothFormats(t *testing.T) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Fatal("podman is not installed (hack/install-deps.sh installs it): ", err)
	}
	out, err := os.MkdirTemp("", "keeplogimage") // podman names an OCI layout's image after its (lowercase) path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(out) })
	const ref = "registry.example/keeplog/keeplog:podman-test"
	bin := crossBuild(t, "amd64")
	if err := write(writeConfig{Out: out, Ref: ref, Version: "podman-test",
		Platforms: []spec{{OS: "linux", Arch: "amd64", Binary: bin, Rootfs: fakeRootfs(t, bin)}}}); err != nil {
		t.Fatal(err)
	}
	store := t.TempDir() // podman's own storage for this test only: the machine's images are not touched
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(podman, append([]string{"--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"),
			"--storage-driver", "vfs"}, args...)...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	if got := run("load", "-i", filepath.Join(out, "keeplog-linux-amd64.tar")); !strings.Contains(got, ref) {
		t.Fatalf("podman load of the docker-archive did not name %s:\n%s", ref, got)
	}
	if got := run("image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", ref); strings.TrimSpace(got) != "linux/amd64" {
		t.Fatalf("loaded image is %q, want linux/amd64", got)
	}
	pulled := strings.Fields(run("pull", "-q", "--arch", "amd64", "oci:"+filepath.Join(out, "oci")+":podman-test"))
	if len(pulled) == 0 {
		t.Fatal("podman pull of the OCI layout printed no image ID")
	}
	if got := run("image", "inspect", "--format", "{{.Architecture}}", pulled[len(pulled)-1]); strings.TrimSpace(got) != "amd64" {
		t.Fatalf("image from the OCI layout is %q, want amd64", got)
	}
}
