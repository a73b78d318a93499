package main

import "testing"

// TestEnginesLoadBothArchitectures: what `make image` writes is what the engines on nodes and build machines load,
// each started by the test on its own directories (never the lab's or the machine's): Docker (docker load, docker
// run), containerd (ctr images import of both formats), crane (push to a registry on loopback, then docker pull of
// each platform) and podman (podman load, podman pull oci:). The images are written once (writeEngineImages:
// keeplog itself, cross-compiled for amd64 and arm64; make image-engines gives make image's own output instead) and
// one dockerd serves the Docker and crane parts. A missing engine fails the test; nothing is skipped.
func TestEnginesLoadBothArchitectures(t *testing.T) {
	im := writeEngineImages(t)
	docker, _ := startDockerd(t)
	t.Run("DockerLoad", func(t *testing.T) { dockerLoadsBothArchitectures(t, docker, im) })
	t.Run("ContainerdImport", func(t *testing.T) { containerdImportsBothFormats(t, im) })
	t.Run("CranePushDockerPull", func(t *testing.T) { cranePushThenDockerPull(t, docker, im) })
	t.Run("Podman", func(t *testing.T) { podmanLoadsBothFormats(t, im) })
}
