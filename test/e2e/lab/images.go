package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

const (
	// BusyboxImageRef is the local busybox image every lab imports (use imagePullPolicy: Never).
	BusyboxImageRef = "keeplog.local/e2e/busybox:latest"
	// PauseImageRef is the local sandbox image containerd's CRI is configured with.
	PauseImageRef = "keeplog.local/e2e/pause:latest"

	pausePackage = "github.com/keeplog/keeplog/test/e2e/images/pause"
	defaultPath  = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// imageEpoch is the fixed timestamp that makes image tars reproducible.
func imageEpoch() time.Time { return time.Unix(0, 0).UTC() }

type layerEntry struct {
	name     string // path inside the layer, no leading slash
	mode     int64
	typ      byte
	linkname string
	data     []byte
}

// buildLayer returns an uncompressed layer tar holding entries (parents must be listed).
func buildLayer(entries []layerEntry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:     e.name,
			Mode:     e.mode,
			Typeflag: e.typ,
			Linkname: e.linkname,
			ModTime:  imageEpoch(),
			Format:   tar.FormatPAX,
		}
		if e.typ == tar.TypeDir && !strings.HasSuffix(hdr.Name, "/") {
			hdr.Name += "/"
		}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", e.name, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("layer entry %s: %w", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer tar: %w", err)
	}
	return buf.Bytes(), nil
}

// writeDockerArchive writes a single-layer docker-archive (`docker save` format) to out.
func writeDockerArchive(out, ref string, layer []byte, cfg map[string]any) error {
	layerSum := sha256.Sum256(layer)
	layerHex := hex.EncodeToString(layerSum[:])
	image := map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      imageEpoch().Format(time.RFC3339),
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerHex}},
		"history":      []map[string]any{{"created": imageEpoch().Format(time.RFC3339), "created_by": "keeplog e2e lab"}},
	}
	cfgJSON, err := json.Marshal(image)
	if err != nil {
		return fmt.Errorf("image %s: marshal config: %w", ref, err)
	}
	cfgSum := sha256.Sum256(cfgJSON)
	cfgName := hex.EncodeToString(cfgSum[:]) + ".json"
	layerName := layerHex + "/layer.tar"
	manifest, err := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{ref}, "Layers": []string{layerName}}})
	if err != nil {
		return fmt.Errorf("image %s: marshal manifest: %w", ref, err)
	}

	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("image %s: create %s: %w", ref, out, err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	add := func(name string, typ byte, data []byte) error {
		hdr := &tar.Header{Name: name, Typeflag: typ, Mode: 0o644, ModTime: imageEpoch(), Size: int64(len(data))}
		if typ == tar.TypeDir {
			hdr.Mode, hdr.Size = 0o755, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("image %s: write %s: %w", ref, name, err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write(data); err != nil {
				return fmt.Errorf("image %s: write %s: %w", ref, name, err)
			}
		}
		return nil
	}
	for _, step := range []struct {
		name string
		typ  byte
		data []byte
	}{
		{layerHex + "/", tar.TypeDir, nil},
		{layerName, tar.TypeReg, layer},
		{cfgName, tar.TypeReg, cfgJSON},
		{"manifest.json", tar.TypeReg, manifest},
	} {
		if err := add(step.name, step.typ, step.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("image %s: close %s: %w", ref, out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("image %s: close %s: %w", ref, out, err)
	}
	return nil
}

// findStaticBusybox returns the path of a statically linked busybox (Debian's busybox-static).
func findStaticBusybox() (string, error) {
	var tried []string
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		f, err := elf.Open(p)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		static := true
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				static = false
			}
		}
		f.Close()
		if static {
			return p, nil
		}
		tried = append(tried, p+": dynamically linked")
	}
	return "", fmt.Errorf("no static busybox found (install busybox-static; hack/install-deps.sh): %s", strings.Join(tried, "; "))
}

// busyboxArchive writes the busybox image tar to out: /bin/busybox plus a symlink per applet.
func busyboxArchive(ctx context.Context, out string) error {
	bb, err := findStaticBusybox()
	if err != nil {
		return err
	}
	bin, err := os.ReadFile(bb)
	if err != nil {
		return fmt.Errorf("read %s: %w", bb, err)
	}
	list, err := exec.CommandContext(ctx, bb, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("%s --list-full: %w", bb, err)
	}
	dirs := map[string]bool{}
	for _, d := range []string{"bin", "dev", "etc", "home", "proc", "root", "sbin", "sys", "tmp", "usr", "usr/bin", "usr/sbin", "var", "var/tmp"} {
		dirs[d] = true
	}
	links := map[string]bool{}
	for _, l := range strings.Fields(string(list)) {
		l = strings.TrimPrefix(path.Clean("/"+l), "/")
		if l == "bin/busybox" || l == "" {
			continue
		}
		links[l] = true
		for d := path.Dir(l); d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	if !links["bin/sh"] {
		return fmt.Errorf("%s --list-full has no bin/sh applet", bb)
	}
	var entries []layerEntry
	for _, d := range sortedKeys(dirs) {
		mode := int64(0o755)
		if d == "tmp" || d == "var/tmp" {
			mode = 0o1777
		} else if d == "root" {
			mode = 0o700
		}
		entries = append(entries, layerEntry{name: d, mode: mode, typ: tar.TypeDir})
	}
	entries = append(entries,
		layerEntry{name: "bin/busybox", mode: 0o755, typ: tar.TypeReg, data: bin},
		layerEntry{name: "etc/passwd", mode: 0o644, typ: tar.TypeReg,
			data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		layerEntry{name: "etc/group", mode: 0o644, typ: tar.TypeReg, data: []byte("root:x:0:\nnogroup:x:65534:\n")},
	)
	for _, l := range sortedKeys(links) {
		entries = append(entries, layerEntry{name: l, mode: 0o777, typ: tar.TypeSymlink, linkname: "/bin/busybox"})
	}
	layer, err := buildLayer(entries)
	if err != nil {
		return fmt.Errorf("busybox layer: %w", err)
	}
	return writeDockerArchive(out, BusyboxImageRef, layer, map[string]any{
		"Env": []string{"PATH=" + defaultPath}, "Cmd": []string{"sh"}, "WorkingDir": "/",
	})
}

// pauseArchive builds test/e2e/images/pause (static, CGO_ENABLED=0) and writes its image tar to out.
func pauseArchive(ctx context.Context, workDir, out string) error {
	binPath := filepath.Join(workDir, "pause")
	// Build from the package's source directory when this file's path is known (any working
	// directory then works), else by import path from the current directory.
	dir, target := "", pausePackage
	if _, self, _, ok := runtime.Caller(0); ok {
		src := filepath.Join(filepath.Dir(self), "..", "images", "pause")
		if _, err := os.Stat(filepath.Join(src, "main.go")); err == nil {
			dir, target = src, "."
		}
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", binPath, target)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if outb, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build pause binary (go build %s in %q): %w: %s", target, dir, err, outb)
	}
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return fmt.Errorf("read pause binary: %w", err)
	}
	layer, err := buildLayer([]layerEntry{{name: "pause", mode: 0o755, typ: tar.TypeReg, data: bin}})
	if err != nil {
		return fmt.Errorf("pause layer: %w", err)
	}
	return writeDockerArchive(out, PauseImageRef, layer, map[string]any{
		"Env": []string{"PATH=" + defaultPath}, "Entrypoint": []string{"/pause"},
	})
}

// importImage loads a docker-archive tar into containerd's k8s.io namespace (where the CRI looks).
func importImage(ctx context.Context, socket, tarPath, ref string) error {
	cmd := exec.CommandContext(ctx, "ctr", "-n", "k8s.io", "--address", socket, "images", "import", tarPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr images import %s: %w: %s", tarPath, err, out)
	}
	ls, err := exec.CommandContext(ctx, "ctr", "-n", "k8s.io", "--address", socket, "images", "ls", "-q").Output()
	if err != nil {
		return fmt.Errorf("ctr images ls: %w", err)
	}
	for _, l := range strings.Fields(string(ls)) {
		if l == ref {
			return nil
		}
	}
	return fmt.Errorf("image %s not listed after importing %s (ctr said %q; images: %s)", ref, tarPath, out, ls)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
