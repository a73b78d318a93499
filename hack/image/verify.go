package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// verify reads the OCI layout and each platform's docker-archive back and checks each image (checkImage).
func verify(out, ref string, platforms []string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	idx, err := layoutIndex(filepath.Join(out, "oci"))
	if err != nil {
		return err
	}
	for _, p := range platforms {
		osName, arch, ok := strings.Cut(p, "/")
		if !ok {
			return fmt.Errorf("-platform %q: want OS/ARCH", p)
		}
		fromLayout, err := platformFromIndex(idx, osName, arch)
		if err != nil {
			return err
		}
		tar := filepath.Join(out, fmt.Sprintf("keeplog-%s-%s.tar", osName, arch))
		fromTar, err := tarball.ImageFromPath(tar, &tag)
		if err != nil {
			return fmt.Errorf("%s: %w", tar, err)
		}
		for src, img := range map[string]v1.Image{"OCI layout": fromLayout, tar: fromTar} {
			if err := checkImage(img, osName, arch); err != nil {
				return fmt.Errorf("%s, %s/%s: %w", src, osName, arch, err)
			}
		}
		fmt.Printf("verified %s/%s: keeplog, keeplog-api and mount are %s ELF executables, keeplog and keeplog-api static\n", osName, arch, arch)
	}
	return nil
}

// layoutIndex is the one multi-platform index the layout's index.json names.
func layoutIndex(dir string) (v1.ImageIndex, error) {
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	m, err := top.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 || !m.Manifests[0].MediaType.IsIndex() {
		return nil, fmt.Errorf("%s/index.json should name one image index, has %d entries", dir, len(m.Manifests))
	}
	return top.ImageIndex(m.Manifests[0].Digest)
}

func platformFromIndex(idx v1.ImageIndex, osName, arch string) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS == osName && d.Platform.Architecture == arch {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("the OCI index has no %s/%s image", osName, arch)
}

// checkImage: the configuration names the platform and the entrypoint; the flattened filesystem has the entrypoint
// and keeplog-api as static ELFs of arch and /bin/mount and /bin/umount as ELF files of arch.
func checkImage(img v1.Image, osName, arch string) error {
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	if cfg.OS != osName || cfg.Architecture != arch {
		return fmt.Errorf("config says %s/%s", cfg.OS, cfg.Architecture)
	}
	if len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/"+binaryPath {
		return fmt.Errorf("entrypoint %q, want [/%s]", cfg.Config.Entrypoint, binaryPath)
	}
	files, err := imageFiles(img, binaryPath, apiBinaryPath, "bin/mount", "bin/umount")
	if err != nil {
		return err
	}
	for p, data := range files {
		if err := checkELF(data, arch, p == binaryPath || p == apiBinaryPath); err != nil {
			return fmt.Errorf("/%s: %w", p, err)
		}
	}
	return nil
}

// imageFiles returns the content of the wanted regular files in the image's layers (a later layer wins).
func imageFiles(img v1.Image, want ...string) (map[string][]byte, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	found := map[string][]byte{}
	for _, l := range layers {
		if err := layerFiles(l, want, found); err != nil {
			return nil, err
		}
	}
	for _, w := range want {
		if _, ok := found[w]; !ok {
			return nil, fmt.Errorf("no /%s in the image", w)
		}
	}
	return found, nil
}

func layerFiles(l v1.Layer, want []string, found map[string][]byte) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		n := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		for _, w := range want {
			if n == w && h.Typeflag == tar.TypeReg {
				if found[w], err = io.ReadAll(tr); err != nil {
					return err
				}
			}
		}
	}
}
