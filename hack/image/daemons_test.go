package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// engineImages is what the engine tests load: `make image`'s output when KEEPLOG_IMAGE_DIR names it (make
// image-engines: the real base from hack/image-rootfs.sh), else the same writer's output for keeplog itself,
// cross-compiled for amd64 and arm64 with `make build`'s flags, on a stand-in base (bin/mount, bin/umount).
type engineImages struct {
	Dir, Ref string
	RealBase bool // Dir is make image's: /bin/mount is util-linux's
}

func writeEngineImages(t *testing.T) engineImages {
	t.Helper()
	if dir := os.Getenv("KEEPLOG_IMAGE_DIR"); dir != "" {
		ref, err := os.ReadFile(filepath.Join(dir, "ref"))
		if err != nil {
			t.Fatalf("KEEPLOG_IMAGE_DIR=%s is not make image's output: %v", dir, err)
		}
		return engineImages{Dir: dir, Ref: strings.TrimSpace(string(ref)), RealBase: true}
	}
	out := t.TempDir()
	const ref = "registry.example/keeplog/keeplog:engine-test"
	var specs []spec
	for _, arch := range []string{"amd64", "arm64"} {
		bin := buildKeeplog(t, arch, "engine-test")
		specs = append(specs, spec{OS: "linux", Arch: arch, Binary: bin, APIBinary: bin, Rootfs: fakeRootfs(t, crossBuild(t, arch))})
	}
	if err := write(writeConfig{Out: out, Ref: ref, Version: "engine-test", Platforms: specs}); err != nil {
		t.Fatal(err)
	}
	return engineImages{Dir: out, Ref: ref}
}

// buildKeeplog cross-compiles cmd/keeplog for linux/arch as `make image` does.
func buildKeeplog(t *testing.T, arch, version string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "keeplog-linux-"+arch)
	cmd := exec.Command("go", "build", "-tags", "grpcnotrace", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", out, "./cmd/keeplog")
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/keeplog GOARCH=%s: %v\n%s", arch, err, b)
	}
	return out
}

// archive is one platform's docker-archive and what an engine must report after loading it.
type archive struct {
	Arch, Path string
	ID         string   // the config's digest: docker's image ID
	DiffIDs    []string // docker inspect's RootFS.Layers
	Entrypoint []string
	Version    string // the org.opencontainers.image.version label: what keeplog --version prints
}

func (im engineImages) archive(t *testing.T, arch string) archive {
	t.Helper()
	p := filepath.Join(im.Dir, "keeplog-linux-"+arch+".tar")
	tag, err := name.NewTag(im.Ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(p, &tag)
	if err != nil {
		t.Fatal(err)
	}
	id, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	a := archive{Arch: arch, Path: p, ID: id.String(), Entrypoint: cfg.Config.Entrypoint, Version: cfg.Config.Labels["org.opencontainers.image.version"]}
	for _, d := range cfg.RootFS.DiffIDs {
		a.DiffIDs = append(a.DiffIDs, d.String())
	}
	if cfg.Architecture != arch || len(a.DiffIDs) != 2 || a.Version == "" {
		t.Fatalf("%s: architecture %s, %d diff IDs, version %q", p, cfg.Architecture, len(a.DiffIDs), a.Version)
	}
	return a
}

// otherArch is the architecture of the two this machine cannot run (no binfmt emulation is assumed).
func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// daemon is one engine process the test started, stopped by its PID.
type daemon struct {
	Dir, Socket string
	cmd         *exec.Cmd
	exited      chan error // cmd.Wait's result, once it has ended
	log         string
	// Children holds the pid files of processes the daemon started (dockerd's containerd), stopped by their PID if
	// they outlive it.
	Children []string
}

// startDaemon runs argv (its log in dir/daemon.log) and waits until socket accepts (ready reports), failing the test
// with the log if it does not within a minute. Cleanup stops it by PID (SIGTERM, then SIGKILL) and unmounts whatever
// is still mounted under dir (dockerd bind-mounts its data root onto itself).
func startDaemon(t *testing.T, dir, socket string, ready func() error, argv ...string) *daemon {
	t.Helper()
	path, err := exec.LookPath(argv[0])
	if err != nil {
		t.Fatalf("%s is not installed (hack/install-deps.sh installs it): %v", argv[0], err)
	}
	d := &daemon{Dir: dir, Socket: socket, log: filepath.Join(dir, "daemon.log"), exited: make(chan error, 1)}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command(path, argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() { d.stop(t) })
	deadline := time.After(time.Minute)
	for {
		err := ready()
		if err == nil {
			return d
		}
		select {
		case werr := <-d.exited:
			d.exited <- werr
			t.Fatalf("%s exited (%v) before it was ready: %v\n%s", argv[0], werr, err, d.Log())
		case <-deadline:
			t.Fatalf("%s not ready after a minute: %v\n%s", argv[0], err, d.Log())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Log is the daemon's output so far.
func (d *daemon) Log() string {
	b, _ := os.ReadFile(d.log)
	return string(b)
}

func (d *daemon) stop(t *testing.T) {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Errorf("%s ignored SIGTERM for 30s; SIGKILL", d.cmd.Path)
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
	for _, f := range d.Children {
		stopChild(t, f)
	}
	for _, m := range mountsUnder(t, d.Dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Errorf("umount %s: %v", m, err)
		}
	}
}

// stopChild kills the process named by pidFile if it still runs (SIGKILL: its parent, which would have stopped
// it, is gone).
func stopChild(t *testing.T, pidFile string) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return // never started, or removed by its parent on a clean stop
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	// Only a process whose command line names this test's directory: a stale pid file's PID may have been reused.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err == nil && strings.Contains(string(cmdline), filepath.Dir(pidFile)) {
		t.Errorf("pid %d (%s) outlived its parent; SIGKILL", pid, pidFile)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(t *testing.T, dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) > 4 {
			if mp := fields[4]; mp == dir || strings.HasPrefix(mp, dir+"/") {
				out = append(out, mp)
			}
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// shortTempDir is a directory for a daemon's sockets (a unix socket's path has at most 107 bytes; t.TempDir's are
// long), removed at the end of the test, after the daemon started in it has stopped (cleanups run last first).
func shortTempDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	})
	return dir
}

// platformOf names a v1.Platform as os/arch.
func platformOf(p *v1.Platform) string {
	if p == nil {
		return ""
	}
	return p.OS + "/" + p.Architecture
}
