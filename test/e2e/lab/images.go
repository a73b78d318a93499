package lab

import (
	"archive/tar"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/keeplog/keeplog/test/e2e/images/dockerarchive"
)

const (
	// BusyboxImageRef is the local busybox image every lab imports (use imagePullPolicy: Never).
	BusyboxImageRef = "keeplog.local/e2e/busybox:latest"
	// PauseImageRef is the local sandbox image containerd's CRI is configured with.
	PauseImageRef = "keeplog.local/e2e/pause:latest"

	pausePackage = "github.com/keeplog/keeplog/test/e2e/images/pause"
)

// findStaticBusybox returns a statically linked busybox (Debian's busybox-static): its path and content.
func findStaticBusybox() (string, []byte, error) {
	var tried []string
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		bin, err := dockerarchive.ReadStatic(p)
		if err == nil {
			return p, bin, nil
		}
		tried = append(tried, err.Error())
	}
	return "", nil, fmt.Errorf("no static busybox found (install busybox-static; hack/install-deps.sh): %s", strings.Join(tried, "; "))
}

// busyboxArchive writes the busybox image tar to out: /bin/busybox plus a symlink per applet.
func busyboxArchive(ctx context.Context, out string) error {
	bb, bin, err := findStaticBusybox()
	if err != nil {
		return err
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
	var entries []dockerarchive.Entry
	for _, d := range sortedKeys(dirs) {
		mode := int64(0o755)
		switch d {
		case "tmp", "var/tmp":
			mode = 0o1777
		case "root":
			mode = 0o700
		}
		entries = append(entries, dockerarchive.Entry{Name: d, Mode: mode, Type: tar.TypeDir})
	}
	entries = append(entries,
		dockerarchive.Entry{Name: "bin/busybox", Mode: 0o755, Type: tar.TypeReg, Data: bin},
		dockerarchive.Entry{Name: "etc/passwd", Mode: 0o644, Type: tar.TypeReg,
			Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		dockerarchive.Entry{Name: "etc/group", Mode: 0o644, Type: tar.TypeReg, Data: []byte("root:x:0:\nnogroup:x:65534:\n")},
	)
	for _, l := range sortedKeys(links) {
		entries = append(entries, dockerarchive.Entry{Name: l, Mode: 0o777, Type: tar.TypeSymlink, Linkname: "/bin/busybox"})
	}
	return dockerarchive.Write(out, BusyboxImageRef, entries, map[string]any{
		"Env": []string{dockerarchive.PathEnv}, "Cmd": []string{"sh"}, "WorkingDir": "/",
	}, "keeplog e2e lab")
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
	bin, err := dockerarchive.ReadStatic(binPath)
	if err != nil {
		return err
	}
	return dockerarchive.Write(out, PauseImageRef, []dockerarchive.Entry{{Name: "pause", Mode: 0o755, Type: tar.TypeReg, Data: bin}},
		map[string]any{"Env": []string{dockerarchive.PathEnv}, "Entrypoint": []string{"/pause"}}, "keeplog e2e lab")
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
