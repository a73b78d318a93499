package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// podmanLoadsBothFormats: what `make image` writes is what a node's tools load. podman (Debian's, installed by
// hack/install-deps.sh; no daemon, its own storage for this test) loads each architecture's docker-archive with
// `podman load` and copies that architecture out of the OCI layout with `podman pull --arch oci:`: both name the
// image's platform and give the archive's image ID (its config digest).
func podmanLoadsBothFormats(t *testing.T, im engineImages) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Fatal("podman is not installed (hack/install-deps.sh installs it): ", err)
	}
	// podman names an OCI layout's image after its (lowercase) path: a copy under a lowercase temporary name.
	layout, err := os.MkdirTemp("", "keeplogimage")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(layout) })
	if b, err := exec.Command("cp", "-a", filepath.Join(im.Dir, "oci"), filepath.Join(layout, "oci")).CombinedOutput(); err != nil {
		t.Fatalf("cp the OCI layout: %v\n%s", err, b)
	}
	tag := im.Ref[strings.LastIndex(im.Ref, ":")+1:]
	// podman's own storage for this test only (the machine's images are not touched), at a short path: podman
	// refuses a runroot longer than 50 characters.
	store := shortTempDir(t, "kpm")
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
	for _, arch := range []string{"amd64", "arm64"} {
		a := im.archive(t, arch)
		if got := run("load", "-i", a.Path); !strings.Contains(got, im.Ref) {
			t.Fatalf("podman load of the %s docker-archive did not name %s:\n%s", arch, im.Ref, got)
		}
		if got := run("image", "inspect", "--format", "{{.Os}}/{{.Architecture}} sha256:{{.Id}}", im.Ref); strings.TrimSpace(got) != "linux/"+arch+" "+a.ID {
			t.Errorf("podman loaded %q, want linux/%s %s", got, arch, a.ID)
		}
		pulled := strings.Fields(run("pull", "-q", "--arch", arch, "oci:"+filepath.Join(layout, "oci")+":"+tag))
		if len(pulled) == 0 {
			t.Fatal("podman pull of the OCI layout printed no image ID")
		}
		if got := run("image", "inspect", "--format", "{{.Architecture}} sha256:{{.Id}}", pulled[len(pulled)-1]); strings.TrimSpace(got) != arch+" "+a.ID {
			t.Errorf("%s image from the OCI layout is %q, want %s %s", arch, got, arch, a.ID)
		}
	}
}
