// Package dockerarchive writes single-layer images in the docker-archive format (`docker save`: manifest.json, an
// image config and one uncompressed layer) that `ctr images import` loads, so the e2e tests build their images
// without Docker. The tars are reproducible: every timestamp is the Unix epoch.
package dockerarchive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// PathEnv is the usual PATH for an image config's Env.
const PathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// epoch is the fixed timestamp that makes the tars reproducible.
func epoch() time.Time { return time.Unix(0, 0).UTC() }

// Entry is one file, directory or symlink of the layer.
type Entry struct {
	Name     string // path inside the image, no leading slash; parents must be listed before
	Mode     int64
	Type     byte // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	Linkname string
	Data     []byte
}

// Write writes the image ref with one layer holding entries and the image config cfg (Env, Entrypoint, Cmd, ...)
// to out. createdBy goes into the image history.
func Write(out, ref string, entries []Entry, cfg map[string]any, createdBy string) (err error) {
	layer, err := tarOf(entries)
	if err != nil {
		return fmt.Errorf("image %s: layer: %w", ref, err)
	}
	sum := sha256.Sum256(layer)
	layerHex := hex.EncodeToString(sum[:])
	created := epoch().Format(time.RFC3339)
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      created,
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerHex}},
		"history":      []map[string]any{{"created": created, "created_by": createdBy}},
	})
	if err != nil {
		return fmt.Errorf("image %s: marshal config: %w", ref, err)
	}
	csum := sha256.Sum256(config)
	configName := hex.EncodeToString(csum[:]) + ".json"
	layerName := layerHex + "/layer.tar"
	manifest, err := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": []string{ref}, "Layers": []string{layerName}}})
	if err != nil {
		return fmt.Errorf("image %s: marshal manifest: %w", ref, err)
	}
	archive, err := tarOf([]Entry{
		{Name: layerHex, Mode: 0o755, Type: tar.TypeDir},
		{Name: layerName, Mode: 0o644, Type: tar.TypeReg, Data: layer},
		{Name: configName, Mode: 0o644, Type: tar.TypeReg, Data: config},
		{Name: "manifest.json", Mode: 0o644, Type: tar.TypeReg, Data: manifest},
	})
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	if err := os.WriteFile(out, archive, 0o644); err != nil {
		return fmt.Errorf("image %s: write %s: %w", ref, out, err)
	}
	return nil
}

// tarOf returns an uncompressed tar of entries.
func tarOf(entries []Entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.Name, Mode: e.Mode, Typeflag: e.Type, Linkname: e.Linkname, ModTime: epoch(),
			Format: tar.FormatPAX}
		switch e.Type {
		case tar.TypeDir:
			hdr.Name = strings.TrimSuffix(hdr.Name, "/") + "/"
		case tar.TypeReg:
			hdr.Size = int64(len(e.Data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("entry %s: %w", e.Name, err)
		}
		if e.Type == tar.TypeReg {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, fmt.Errorf("entry %s: %w", e.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	return buf.Bytes(), nil
}

// ErrDynamic is returned by ReadStatic for an executable that needs a dynamic loader.
var ErrDynamic = errors.New("dynamically linked")

// ReadStatic reads an ELF executable and refuses one that needs a dynamic loader (the images have no libc).
func ReadStatic(path string) ([]byte, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("image: %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("image: %s is %w; the image has no libc (build with CGO_ENABLED=0)", path, ErrDynamic)
		}
	}
	return os.ReadFile(path)
}
