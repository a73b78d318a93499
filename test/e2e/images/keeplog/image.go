// Package keeplogimage builds the images the chart e2e test installs, without Docker: docker-archive tars (the
// `docker save` format: manifest.json, an image config and one uncompressed layer) that `ctr images import` loads.
//
//   - keeplog: the static bin/keeplog at /usr/local/bin/keeplog (the Dockerfile's entrypoint) plus a static busybox
//     with the mount and umount applets k8s.io/mount-utils runs (the Dockerfile installs util-linux's instead) and
//     sh for debugging.
//   - csi-provisioner: the static csi-provisioner binary at /csi-provisioner, the upstream image's entrypoint.
package keeplogimage

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

const pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// epoch is the fixed timestamp that makes the tars reproducible.
var epoch = time.Unix(0, 0).UTC()

type entry struct {
	name     string // inside the image, no leading slash
	mode     int64
	typ      byte
	linkname string
	data     []byte
}

// WriteKeeplog writes the keeplog image as ref to out. keeplogBin and busybox must be statically linked.
func WriteKeeplog(out, ref, keeplogBin, busybox string) error {
	bin, err := readStatic(keeplogBin)
	if err != nil {
		return err
	}
	bb, err := readStatic(busybox)
	if err != nil {
		return err
	}
	entries := []entry{
		{name: "bin", mode: 0o755, typ: tar.TypeDir},
		{name: "bin/busybox", mode: 0o755, typ: tar.TypeReg, data: bb},
		{name: "etc", mode: 0o755, typ: tar.TypeDir},
		{name: "etc/keeplog", mode: 0o755, typ: tar.TypeDir},
		{name: "tmp", mode: 0o1777, typ: tar.TypeDir},
		{name: "usr", mode: 0o755, typ: tar.TypeDir},
		{name: "usr/local", mode: 0o755, typ: tar.TypeDir},
		{name: "usr/local/bin", mode: 0o755, typ: tar.TypeDir},
		{name: "usr/local/bin/keeplog", mode: 0o755, typ: tar.TypeReg, data: bin},
	}
	for _, applet := range []string{"mount", "umount", "sh"} {
		entries = append(entries, entry{name: "bin/" + applet, mode: 0o777, typ: tar.TypeSymlink, linkname: "busybox"})
	}
	return writeArchive(out, ref, entries, map[string]any{
		"Env": []string{pathEnv}, "Entrypoint": []string{"/usr/local/bin/keeplog"}, "WorkingDir": "/",
	})
}

// WriteProvisioner writes the csi-provisioner image as ref to out. bin must be statically linked.
func WriteProvisioner(out, ref, bin string) error {
	data, err := readStatic(bin)
	if err != nil {
		return err
	}
	return writeArchive(out, ref, []entry{
		{name: "csi-provisioner", mode: 0o755, typ: tar.TypeReg, data: data},
		{name: "tmp", mode: 0o1777, typ: tar.TypeDir},
	}, map[string]any{"Env": []string{pathEnv}, "Entrypoint": []string{"/csi-provisioner"}, "WorkingDir": "/"})
}

// readStatic reads an ELF executable and refuses one that needs a dynamic loader (the image has no libc).
func readStatic(path string) ([]byte, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("image: %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("image: %s is dynamically linked; the image has no libc (build with CGO_ENABLED=0)", path)
		}
	}
	return os.ReadFile(path)
}

func layer(entries []entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: e.typ, Linkname: e.linkname, ModTime: epoch, Format: tar.FormatPAX}
		switch e.typ {
		case tar.TypeDir:
			hdr.Name += "/"
		case tar.TypeReg:
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeArchive(out, ref string, entries []entry, cfg map[string]any) (err error) {
	l, err := layer(entries)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	sum := sha256.Sum256(l)
	layerHex := hex.EncodeToString(sum[:])
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerHex}},
		"history":      []map[string]any{{"created": epoch.Format(time.RFC3339), "created_by": "keeplog chart e2e"}},
	})
	if err != nil {
		return err
	}
	csum := sha256.Sum256(config)
	configName := hex.EncodeToString(csum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": []string{ref}, "Layers": []string{layerHex + "/layer.tar"}}})
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	tw := tar.NewWriter(f)
	for _, e := range []entry{
		{name: layerHex, mode: 0o755, typ: tar.TypeDir},
		{name: layerHex + "/layer.tar", mode: 0o644, typ: tar.TypeReg, data: l},
		{name: configName, mode: 0o644, typ: tar.TypeReg, data: config},
		{name: "manifest.json", mode: 0o644, typ: tar.TypeReg, data: manifest},
	} {
		hdr := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: e.typ, ModTime: epoch, Size: int64(len(e.data))}
		if e.typ == tar.TypeDir {
			hdr.Name = strings.TrimSuffix(hdr.Name, "/") + "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("image %s: %w", ref, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return fmt.Errorf("image %s: %w", ref, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	return nil
}
