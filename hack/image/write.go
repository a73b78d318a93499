package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// binaryPath is where the Dockerfile copies keeplog, its entrypoint; apiBinaryPath is keeplog-api's, the command of
// the chart's keeplog-api Deployment.
const (
	binaryPath    = "usr/local/bin/keeplog"
	apiBinaryPath = "usr/local/bin/keeplog-api"
)

type writeConfig struct {
	Out, Ref, Version string
	Epoch             int64
	Platforms         []spec
}

// write builds every platform's image and writes the OCI layout and the docker-archives.
func write(c writeConfig) error {
	tag, err := name.NewTag(c.Ref)
	if err != nil {
		return fmt.Errorf("-ref: %w", err)
	}
	mtime := time.Unix(c.Epoch, 0).UTC()
	index := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return err
	}
	// A docker-archive of a platform not written this time (IMAGE_ARCHS=amd64 after both) would be stale.
	stale, err := filepath.Glob(filepath.Join(c.Out, "keeplog-*-*.tar"))
	if err != nil {
		return err
	}
	for _, f := range stale {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	for _, s := range c.Platforms {
		img, err := platformImage(s, c.Version, mtime)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", s.OS, s.Arch, err)
		}
		index = mutate.AppendManifests(index, mutate.IndexAddendum{Add: img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: s.OS, Architecture: s.Arch}}})
		tar := filepath.Join(c.Out, fmt.Sprintf("keeplog-%s-%s.tar", s.OS, s.Arch))
		if err := tarball.WriteToFile(tar, tag, img); err != nil {
			return fmt.Errorf("docker-archive %s: %w", tar, err)
		}
		fmt.Printf("%s: %s (%s/%s)\n", tar, tag, s.OS, s.Arch)
	}
	return writeLayout(filepath.Join(c.Out, "oci"), tag, index)
}

// writeLayout writes an OCI layout whose index.json has one entry, the multi-platform index, named by the tag (what
// `skopeo copy --all oci:DIR:TAG` looks up and `crane push DIR REF` pushes; `crane push --index` would push
// index.json itself, an index of this index).
func writeLayout(dir string, tag name.Tag, index v1.ImageIndex) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	err = p.AppendIndex(index, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag.TagStr(),
		"io.containerd.image.name":          tag.Name(),
	}))
	if err != nil {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	fmt.Printf("%s: OCI layout, %s\n", dir, tag)
	return nil
}

// platformImage is the base layer and the binaries' layer with keeplog's configuration.
func platformImage(s spec, version string, mtime time.Time) (v1.Image, error) {
	bin, err := staticBinary(s.Binary, s.Arch)
	if err != nil {
		return nil, err
	}
	apiBin, err := staticBinary(s.APIBinary, s.Arch)
	if err != nil {
		return nil, err
	}
	baseEntries, err := rootfsEntries(s.Rootfs)
	if err != nil {
		return nil, err
	}
	base, err := layerFrom(baseEntries, mtime)
	if err != nil {
		return nil, err
	}
	app, err := layerFrom([]entry{{Name: binaryPath, Mode: 0o755, Type: '0', Data: bin},
		{Name: apiBinaryPath, Mode: 0o755, Type: '0', Data: apiBin}}, mtime)
	if err != nil {
		return nil, err
	}
	// The configuration first: mutate.Append then adds each layer's diff ID and history to it.
	img, err := mutate.ConfigFile(empty.Image, imageConfig(s, version, mtime))
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, l := range []v1.Layer{base, app} {
		add := mutate.Addendum{Layer: l, MediaType: types.OCILayer,
			History: v1.History{Created: v1.Time{Time: mtime}, CreatedBy: "keeplog hack/image"}}
		if img, err = mutate.Append(img, add); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// staticBinary reads a binary and checks it is a static ELF of arch.
func staticBinary(path, arch string) ([]byte, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := checkELF(bin, arch, true); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return bin, nil
}

// imageConfig is the Dockerfile's: entrypoint /usr/local/bin/keeplog, root, Debian's PATH.
func imageConfig(s spec, version string, created time.Time) *v1.ConfigFile {
	return &v1.ConfigFile{
		Architecture: s.Arch, OS: s.OS, Created: v1.Time{Time: created},
		RootFS: v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint: []string{"/" + binaryPath},
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Labels: map[string]string{
				"org.opencontainers.image.title":       "keeplog",
				"org.opencontainers.image.description": "keeplog CSI node plugin",
				"org.opencontainers.image.source":      "https://github.com/keeplog/keeplog",
				"org.opencontainers.image.version":     version,
				"org.opencontainers.image.base.name":   "debian:bookworm (mount and its libraries)",
			},
		},
	}
}
