package lab

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KubeletRootDir is the kubelet's --root-dir: the default, because CSI plugin registration
// (plugins_registry/) and the CSI plugin sockets (plugins/) live under it.
const KubeletRootDir = "/var/lib/kubelet"

// varLogContainers is where the kubelet links container logs (into its podLogsDir, LogDir()/pods).
const varLogContainers = "/var/log/containers"

// kubeletConfig is the lab's KubeletConfiguration: cgroupfs on cgroup v1, webhook authn/authz
// plus the lab CA, servers on loopback, no static pods, no swap check, eviction and image GC
// relaxed so a small test disk never evicts, and no iptables changes.
func (l *Lab) kubeletConfig(socket string) string {
	p := l.pki
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %[1]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[2]d
tlsCertFile: %[3]q
tlsPrivateKeyFile: %[4]q
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
    cacheTTL: 10s
  x509:
    clientCAFile: %[5]q
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 10s
    cacheUnauthorizedTTL: 5s
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: %[6]q
imageServiceEndpoint: %[6]q
staticPodPath: ""
podLogsDir: %[7]q
syncFrequency: 10s
fileCheckFrequency: 20s
nodeStatusUpdateFrequency: 4s
nodeStatusReportFrequency: 1m0s
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "0%%"
  nodefs.inodesFree: "0%%"
  imagefs.available: "0%%"
  imagefs.inodesFree: "0%%"
evictionPressureTransitionPeriod: 5s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
protectKernelDefaults: false
makeIPTablesUtilChains: false
registerNode: true
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
`, l.ports.kubelet, l.ports.kubeletHealthz, p.KubeletCert, p.KubeletKey, p.CACert,
		"unix://"+socket, filepath.Join(l.logDir, "pods"))
}

// startKubelet runs kubelet v1.34 against the lab's containerd and waits for /healthz and node Ready.
func (l *Lab) startKubelet(ctx context.Context) error {
	if err := ensureHostsEntry("/etc/hosts", l.nodeName); err != nil {
		return err
	}
	if _, err := os.Stat(KubeletRootDir); os.IsNotExist(err) {
		l.createdKubeletDir = true
	}
	if _, err := os.Stat(varLogContainers); os.IsNotExist(err) {
		l.createdVarLogContainers = true
	}
	l.savedSysctls = readSysctls(kubeletSysctls())
	dir := filepath.Join(l.workDir, "kubelet")
	for _, d := range []string{dir, filepath.Join(dir, "volume-plugins"), filepath.Join(l.logDir, "pods")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	kc := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kc, l.apiURL, l.pki.CACert, "system:node:"+l.nodeName, l.pki.KubeletToken); err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(l.kubeletConfig(l.containerdSock)), 0o644); err != nil {
		return fmt.Errorf("write kubelet config %s: %w", cfgPath, err)
	}
	// No --node-ip=127.0.0.1: the kubelet rejects loopback node IPs ("nodeIP can't be loopback
	// address"). It reports the default-route interface's address as InternalIP but listens on
	// 127.0.0.1 only; the apiserver reaches it by Hostname (the /etc/hosts line above).
	argv := []string{filepath.Join(l.cfg.BinDir, "kubelet"),
		"--config=" + cfgPath,
		"--kubeconfig=" + kc,
		"--root-dir=" + KubeletRootDir,
		"--hostname-override=" + l.nodeName,
		// FlexVolume dir: a flag, not a config field; kept out of /usr/libexec.
		"--volume-plugin-dir=" + filepath.Join(dir, "volume-plugins"),
		"--v=2",
	}
	p, err := l.startComponent("kubelet", argv, nil)
	if err != nil {
		return err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", l.ports.kubeletHealthz)
	hc := &http.Client{Timeout: 2 * time.Second}
	err = l.waitFor(ctx, p, "kubelet "+url, 2*time.Minute, func(ctx context.Context) error {
		_, err := getOK(ctx, hc, url, "")
		return err
	})
	if err != nil {
		return err
	}
	return l.waitNodeReady(ctx, p, 3*time.Minute)
}

// WaitNodeReady waits until the lab's node reports condition Ready=True.
func (l *Lab) WaitNodeReady(ctx context.Context, timeout time.Duration) error {
	return l.waitNodeReady(ctx, nil, timeout)
}

func (l *Lab) waitNodeReady(ctx context.Context, p *Process, timeout time.Duration) error {
	return l.waitFor(ctx, p, "node "+l.nodeName+" Ready", timeout, func(ctx context.Context) error {
		node, err := l.client.CoreV1().Nodes().Get(ctx, l.nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node condition Ready=%s: %s: %s", c.Status, c.Reason, c.Message)
			}
		}
		return fmt.Errorf("no Ready condition yet")
	})
}

// ensureHostsEntry adds "127.0.0.1 <name>" to the hosts file unless a 127.0.0.1 line already
// names it (so the apiserver reaches the kubelet by hostname on loopback). Other lines are kept;
// the line is appended in place because /etc/hosts may be a bind mount that cannot be replaced.
func ensureHostsEntry(path, name string) error {
	f, err := os.Open(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	endsWithNewline := true
	if err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			fields := strings.Fields(line)
			if len(fields) < 2 || fields[0] != "127.0.0.1" {
				continue
			}
			for _, h := range fields[1:] {
				if h == name {
					f.Close()
					return nil
				}
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if data, err := os.ReadFile(path); err == nil && len(data) > 0 && data[len(data)-1] != '\n' {
			endsWithNewline = false
		}
	}
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open %s to add \"127.0.0.1 %s\": %w", path, name, err)
	}
	line := "127.0.0.1 " + name + " # keeplog e2e lab\n"
	if !endsWithNewline {
		line = "\n" + line
	}
	if _, err := w.WriteString(line); err != nil {
		w.Close()
		return fmt.Errorf("append to %s: %w", path, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// kubeletSysctls are the kernel settings the kubelet (protectKernelDefaults: false) rewrites at
// start; the lab restores their previous values at Stop.
func kubeletSysctls() []string {
	return []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
		"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}
}

func readSysctls(names []string) map[string]string {
	out := map[string]string{}
	for _, n := range names {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", n)); err == nil {
			out[n] = strings.TrimSpace(string(b))
		}
	}
	return out
}

// restoreSysctls writes back the saved values that the kubelet changed.
func (l *Lab) restoreSysctls() error {
	var errs []string
	for n, want := range l.savedSysctls {
		path := filepath.Join("/proc/sys", n)
		b, err := os.ReadFile(path)
		if err != nil || strings.TrimSpace(string(b)) == want {
			continue
		}
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			errs = append(errs, fmt.Sprintf("%s=%s: %v", n, want, err))
			continue
		}
		l.logf("restored sysctl %s=%s", strings.ReplaceAll(n, "/", "."), want)
	}
	if len(errs) > 0 {
		return fmt.Errorf("restore sysctls: %s", strings.Join(errs, "; "))
	}
	return nil
}
