package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cniBinDir is where Debian's containernetworking-plugins installs the CNI plugins.
const cniBinDir = "/usr/lib/cni"

// runContainerd is where containerd 1.6 shims put their sockets (in s/) whatever the state dir.
const runContainerd = "/run/containerd"

// maxUnixSocketPath is the longest usable sun_path (108 bytes including the terminating NUL).
const maxUnixSocketPath = 107

// containerdConfig is containerd 1.6's config (version 2) for the lab: own root/state/socket,
// CRI with cgroupfs, restrict_oom_score_adj (no CAP_SYS_RESOURCE here), the local pause image,
// a loopback-only CNI network, the stream server on loopback, and the "opt" dir (default
// /opt/containerd, created at start) inside the WorkDir.
func containerdConfig(root, state, socket, runcRoot, cniConfDir, optDir string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
oom_score = 0

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[debug]
  address = ""

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = %[9]q
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = %[5]q
    restrict_oom_score_adj = true
    disable_apparmor = true
    enable_selinux = false
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_unprivileged_ports = false
    enable_unprivileged_icmp = false
    max_container_log_line_size = 16384
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      discard_unpacked_layers = false
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = %[6]q
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = %[7]q
      conf_dir = %[8]q
      max_conf_num = 1
`, root, state, socket, socket+".ttrpc", PauseImageRef, runcRoot, cniBinDir, cniConfDir, optDir)
}

// loopbackCNIConfig is a CNI network that only brings up `lo` in the pod's network namespace:
// it needs no address besides loopback, yet makes the CRI report NetworkReady, so the node
// becomes Ready. Pods use hostNetwork anyway.
const loopbackCNIConfig = `{
  "cniVersion": "0.4.0",
  "name": "keeplog-lab-loopback",
  "plugins": [
    {"type": "loopback"}
  ]
}
`

// startContainerd runs Debian's containerd with its own config, root, state and socket under the
// WorkDir, waits for the CRI plugin, and imports the busybox and pause images.
func (l *Lab) startContainerd(ctx context.Context) error {
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return fmt.Errorf("containerd not found on PATH (install containerd; hack/install-deps.sh): %w", err)
	}
	if _, err := exec.LookPath("ctr"); err != nil {
		return fmt.Errorf("ctr not found on PATH (install containerd; hack/install-deps.sh): %w", err)
	}
	if _, err := os.Stat(filepath.Join(cniBinDir, "loopback")); err != nil {
		return fmt.Errorf("CNI loopback plugin missing (install containernetworking-plugins; hack/install-deps.sh): %w", err)
	}
	dir := filepath.Join(l.workDir, "containerd")
	root, state := filepath.Join(dir, "root"), filepath.Join(dir, "state")
	runcRoot := filepath.Join(state, "runc")
	cniConf := filepath.Join(l.workDir, "cni", "net.d")
	socket := filepath.Join(dir, "containerd.sock")
	if len(socket)+len(".ttrpc") > maxUnixSocketPath {
		return fmt.Errorf("containerd socket path %s is too long for a unix socket (%d bytes, max %d with .ttrpc): use a shorter WorkDir",
			socket, len(socket)+len(".ttrpc"), maxUnixSocketPath)
	}
	for _, d := range []string{root, state, cniConf} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := os.WriteFile(filepath.Join(cniConf, "10-keeplog-lab-loopback.conflist"), []byte(loopbackCNIConfig), 0o644); err != nil {
		return fmt.Errorf("write CNI config in %s: %w", cniConf, err)
	}
	if _, err := os.Stat(runContainerd); os.IsNotExist(err) {
		l.createdRunContainerd = true
	}
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(containerdConfig(root, state, socket, runcRoot, cniConf, filepath.Join(dir, "opt"))), 0o644); err != nil {
		return fmt.Errorf("write containerd config %s: %w", cfgPath, err)
	}
	p, err := l.startComponent("containerd", []string{bin, "--config", cfgPath, "--log-level", "info"}, nil)
	if err != nil {
		return err
	}
	l.containerdSock = socket
	err = l.waitFor(ctx, p, "containerd CRI plugin on "+socket, time.Minute, func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, "ctr", "--address", socket, "plugins", "ls").CombinedOutput()
		if err != nil {
			return fmt.Errorf("ctr plugins ls: %v: %s", err, strings.TrimSpace(string(out)))
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) >= 4 && f[0] == "io.containerd.grpc.v1" && f[1] == "cri" {
				if f[len(f)-1] == "ok" {
					return nil
				}
				return fmt.Errorf("cri plugin status %q", f[len(f)-1])
			}
		}
		return fmt.Errorf("cri plugin not listed yet")
	})
	if err != nil {
		return err
	}
	return l.importImages(ctx)
}

// importImages builds and imports the busybox and pause images.
func (l *Lab) importImages(ctx context.Context) error {
	start := time.Now()
	dir := filepath.Join(l.workDir, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	bbTar, pauseTar := filepath.Join(dir, "busybox.tar"), filepath.Join(dir, "pause.tar")
	if err := busyboxArchive(ctx, bbTar); err != nil {
		return err
	}
	if err := pauseArchive(ctx, dir, pauseTar); err != nil {
		return err
	}
	if err := importImage(ctx, l.containerdSock, pauseTar, PauseImageRef); err != nil {
		return err
	}
	if err := importImage(ctx, l.containerdSock, bbTar, BusyboxImageRef); err != nil {
		return err
	}
	l.logf("images %s and %s imported in %s", BusyboxImageRef, PauseImageRef, time.Since(start).Round(10*time.Millisecond))
	return nil
}

// cleanupContainerd force-deletes every task and container left in containerd (pods the kubelet
// did not tear down), then stops, by PID, any shim that still serves this lab's socket.
func (l *Lab) cleanupContainerd(ctx context.Context, containerdAlive bool) {
	if l.containerdSock == "" {
		return
	}
	if containerdAlive {
		ctr := func(args ...string) (string, error) {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			full := append([]string{"-n", "k8s.io", "--address", l.containerdSock}, args...)
			out, err := exec.CommandContext(cctx, "ctr", full...).CombinedOutput()
			return string(out), err
		}
		if out, err := ctr("tasks", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				l.logf("containerd: deleting leftover task %s", id)
				if o, err := ctr("tasks", "delete", "--force", id); err != nil {
					l.logf("containerd: delete task %s: %v: %s", id, err, strings.TrimSpace(o))
				}
			}
		}
		if out, err := ctr("containers", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				if o, err := ctr("containers", "delete", id); err != nil {
					l.logf("containerd: delete container %s: %v: %s", id, err, strings.TrimSpace(o))
				}
			}
		}
	}
	for _, pid := range l.shimPIDs() {
		l.logf("containerd: stopping leftover shim pid %d", pid)
		killShim(pid, 10*time.Second)
	}
}

// shimPIDs lists live containerd shims whose command line names this lab's containerd socket.
func (l *Lab) shimPIDs() []int {
	var out []int
	for _, pid := range ProcessesReferencing(l.containerdSock) {
		exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
		if err != nil {
			continue
		}
		if strings.HasPrefix(filepath.Base(exe), "containerd-shim") {
			out = append(out, pid)
		}
	}
	return out
}
