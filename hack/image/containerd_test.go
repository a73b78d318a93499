package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// startContainerd runs a containerd of the test's own (Debian's, as on the lab's node; never the lab's): its root,
// state and sockets in a temporary directory, the CRI plugin off. ctr runs against it.
func startContainerd(t *testing.T) (ctr runner) {
	t.Helper()
	dir := shortTempDir(t, "kct")
	sock := filepath.Join(dir, "c.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", filepath.Join(dir, "opt"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		b, err := exec.Command("ctr", append([]string{"--address", sock}, args...)...).CombinedOutput()
		return string(b), err
	}
	ready := func() error { _, err := run("version"); return err }
	d := startDaemon(t, dir, sock, ready, "containerd", "--config", filepath.Join(dir, "config.toml"))
	return func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("ctr %s: %v\n%s\ncontainerd's log:\n%s", strings.Join(args, " "), err, out, d.Log())
		}
		return out
	}
}

// ctrImage is one line of `ctr images ls`: name, the target's media type and digest, the platforms present.
type ctrImage struct {
	Name, MediaType, Digest, Platforms string
}

func ctrImages(t *testing.T, ctr runner, ns string) map[string]ctrImage {
	t.Helper()
	out := map[string]ctrImage{}
	for _, l := range strings.Split(strings.TrimSpace(ctr(t, "-n", ns, "images", "ls")), "\n")[1:] {
		// REF TYPE DIGEST SIZE(2 fields) PLATFORMS LABELS
		f := strings.Fields(l)
		if len(f) < 7 {
			t.Fatalf("ctr images ls line %q", l)
		}
		out[f[0]] = ctrImage{Name: f[0], MediaType: f[1], Digest: f[2], Platforms: f[5]}
	}
	return out
}

// ctrManifestConfig is the config digest of the image manifest digest in ns's content store.
func ctrManifestConfig(t *testing.T, ctr runner, ns, digest string) string {
	t.Helper()
	var m v1.Manifest
	if err := json.Unmarshal([]byte(ctr(t, "-n", ns, "content", "get", digest)), &m); err != nil {
		t.Fatalf("manifest %s: %v", digest, err)
	}
	return m.Config.Digest.String()
}

// ctrContent is a blob of ns's content store, which fails the test when it is not there.
func ctrContent(t *testing.T, ctr runner, ns string, d v1.Hash) []byte {
	t.Helper()
	return []byte(ctr(t, "-n", ns, "content", "get", d.String()))
}

// containerdImportsBothFormats: `ctr images import` (containerd 1.6, started by the test) of each
// docker-archive `make image` writes names the image by the reference with that archive's platform and config, on
// a node of that architecture without flags (this machine's) and with --platform for the other; the OCI layout,
// tarred, imports as one multi-platform index named by the reference, and every platform's manifest, config and
// layers are in the content store: the same image config as that platform's docker-archive. (The lab's chart e2e
// imports this machine's docker-archive into kubelet's containerd and runs it.)
func containerdImportsBothFormats(t *testing.T, im engineImages) {
	ctr := startContainerd(t)
	configs := map[string]string{}
	for _, arch := range []string{runtime.GOARCH, otherArch()} {
		a := im.archive(t, arch)
		configs[arch] = a.ID
		ns := "archive-" + arch
		args := []string{"-n", ns, "images", "import"}
		if arch != runtime.GOARCH {
			args = append(args, "--platform", "linux/"+arch)
		}
		if out := ctr(t, append(args, a.Path)...); !strings.Contains(out, "unpacking "+im.Ref) {
			t.Errorf("ctr images import %s:\n%s", a.Path, out)
		}
		got := ctrImages(t, ctr, ns)[im.Ref]
		if got.Platforms != "linux/"+arch || ctrManifestConfig(t, ctr, ns, got.Digest) != a.ID {
			t.Errorf("ctr imported %s as %+v, want platform linux/%s, config %s", a.Path, got, arch, a.ID)
		}
	}
	oci := filepath.Join(t.TempDir(), "oci.tar")
	if b, err := exec.Command("tar", "-C", filepath.Join(im.Dir, "oci"), "-cf", oci, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar the OCI layout: %v\n%s", err, b)
	}
	const ns = "oci"
	ctr(t, "-n", ns, "images", "import", "--all-platforms", oci)
	idx, err := layoutIndex(filepath.Join(im.Dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	got := ctrImages(t, ctr, ns)[im.Ref]
	if got.Digest != want.String() || got.MediaType != "application/vnd.oci.image.index.v1+json" || got.Platforms != "linux/amd64,linux/arm64" {
		t.Fatalf("ctr imported the OCI layout as %+v, want %s, the index %s of linux/amd64,linux/arm64", got, im.Ref, want)
	}
	var index v1.IndexManifest
	if err := json.Unmarshal(ctrContent(t, ctr, ns, want), &index); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, d := range index.Manifests {
		var m v1.Manifest
		if err := json.Unmarshal(ctrContent(t, ctr, ns, d.Digest), &m); err != nil {
			t.Fatal(err)
		}
		arch := d.Platform.Architecture
		if m.Config.Digest.String() != configs[arch] {
			t.Errorf("OCI layout's %s config %s, the docker-archive's %s", platformOf(d.Platform), m.Config.Digest, configs[arch])
		}
		for _, l := range m.Layers {
			ctrContent(t, ctr, ns, l.Digest)
		}
		seen[arch] = true
	}
	if len(seen) != 2 || !seen["amd64"] || !seen["arm64"] {
		t.Errorf("the imported index has platforms %v, want amd64 and arm64", seen)
	}
}
