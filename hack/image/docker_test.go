package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// dockerAPIVersion is Debian 12's dockerd 20.10 API; a newer client (Docker's v28 CLI) speaks it when told.
const dockerAPIVersion = "1.41"

// dockerd is a Docker engine of the test's own: Debian's docker.io (hack/install-deps.sh), its data and exec roots in
// a temporary directory, no iptables rules, no bridge (containers run with --network none), its own containerd (never
// the lab's). It fails the test, never skips, when dockerd is missing.
func startDockerd(t *testing.T) (docker runner, d *daemon) {
	t.Helper()
	client, err := exec.LookPath("docker")
	if err != nil {
		t.Fatal("the docker client is not installed (hack/install-deps.sh installs docker.io): ", err)
	}
	dir := shortTempDir(t, "kdk")
	sock := filepath.Join(dir, "d.sock")
	run := func(args ...string) (string, error) {
		cmd := exec.Command(client, append([]string{"--host", "unix://" + sock}, args...)...)
		cmd.Env = append(os.Environ(), "DOCKER_API_VERSION="+dockerAPIVersion, "DOCKER_CONFIG="+filepath.Join(dir, "client"))
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	ready := func() error { _, err := run("version"); return err }
	d = startDaemon(t, dir, sock, ready, "dockerd", "--host", "unix://"+sock, "--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"), "--pidfile", filepath.Join(dir, "d.pid"), "--iptables=false", "--bridge=none")
	d.Children = []string{filepath.Join(dir, "exec", "containerd", "containerd.pid")}
	return func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("docker %s: %v\n%s\ndockerd's log:\n%s", strings.Join(args, " "), err, out, d.Log())
		}
		return out
	}, d
}

// runner runs a client command, failing t when it fails; it returns the command's output.
type runner func(t *testing.T, args ...string) string

// dockerImage is what `docker image inspect` says of an image.
type dockerImage struct {
	ID           string `json:"Id"`
	RepoTags     []string
	Os           string
	Architecture string
	Config       struct{ Entrypoint []string }
	RootFS       struct{ Layers []string }
}

func inspectDocker(t *testing.T, docker runner, ref string) dockerImage {
	t.Helper()
	var imgs []dockerImage
	if err := json.Unmarshal([]byte(docker(t, "image", "inspect", ref)), &imgs); err != nil || len(imgs) != 1 {
		t.Fatalf("docker image inspect %s: %v (%d images)", ref, err, len(imgs))
	}
	return imgs[0]
}

// dockerLoadsBothArchitectures: `docker load` (Docker engine 20.10, started by the test) of each docker-archive
// `make image` writes gives an image named by the reference whose ID is the archive's config digest, whose
// platform, entrypoint and layers (diff IDs) are the archive's; the image of this machine's architecture runs
// (`docker run --network none`): keeplog --version prints the image's version label, and /bin/mount runs too (with
// make image's real base, util-linux's). The other architecture cannot run here (no emulation): `docker save` gives
// it back and its keeplog is an ELF of that machine. (dockerd 20.10's `docker load` reads docker-archives only: the
// OCI layout is for ctr, podman, skopeo and crane, containerdImportsBothFormats and cranePushThenDockerPull.)
func dockerLoadsBothArchitectures(t *testing.T, docker runner, im engineImages) {
	for _, arch := range []string{runtime.GOARCH, otherArch()} {
		a := im.archive(t, arch)
		if out := docker(t, "load", "-i", a.Path); !strings.Contains(out, "Loaded image: "+im.Ref) {
			t.Fatalf("docker load %s did not name %s:\n%s", a.Path, im.Ref, out)
		}
		got := inspectDocker(t, docker, im.Ref)
		if got.ID != a.ID || got.Os != "linux" || got.Architecture != arch || !slices.Equal(got.Config.Entrypoint, a.Entrypoint) ||
			!slices.Equal(got.RootFS.Layers, a.DiffIDs) || !slices.Contains(got.RepoTags, im.Ref) {
			t.Errorf("docker loaded %+v\nwant ID %s linux/%s entrypoint %v layers %v tag %s", got, a.ID, arch, a.Entrypoint, a.DiffIDs, im.Ref)
		}
		if arch == runtime.GOARCH {
			if out := strings.TrimSpace(docker(t, "run", "--rm", "--network", "none", im.Ref, "--version")); out != "keeplog "+a.Version {
				t.Errorf("docker run %s --version: %q, want %q", im.Ref, out, "keeplog "+a.Version)
			}
			out := docker(t, "run", "--rm", "--network", "none", "--entrypoint", "/bin/mount", im.Ref, "--version")
			if im.RealBase && !strings.Contains(out, "util-linux") {
				t.Errorf("the image's /bin/mount --version: %q, want util-linux's", out)
			}
			continue
		}
		saved := filepath.Join(t.TempDir(), "saved.tar")
		docker(t, "save", "-o", saved, im.Ref)
		tag, _ := name.NewTag(im.Ref)
		img, err := tarball.ImageFromPath(saved, &tag)
		if err != nil {
			t.Fatal(err)
		}
		if id, err := img.ConfigName(); err != nil || id.String() != a.ID {
			t.Errorf("docker save of the %s image: config %v, %v; want %s", arch, id, err, a.ID)
		}
		files, err := imageFiles(img, binaryPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkELF(files[binaryPath], arch, true); err != nil {
			t.Errorf("keeplog in docker's %s image: %v", arch, err)
		}
	}
}
