// Package lab runs a real single-node Kubernetes v1.34 on the local machine for keeplog's e2e
// tests: Debian's etcd and containerd, kube-apiserver, kube-controller-manager, kube-scheduler and
// kubelet built by hack/build-k8s.sh, everything on loopback and every process stopped by PID.
//
// It must run as root on Linux (the kubelet mounts volumes and manages cgroups); install the
// Debian packages with hack/install-deps.sh and build the binaries with hack/build-k8s.sh.
package lab

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const (
	// KubernetesVersion is the version of the Kubernetes binaries the lab runs.
	KubernetesVersion = "v1.34.4"
	// ProvisionerVersion is the version of the csi-provisioner binary.
	ProvisionerVersion = "v6.3.0"
)

// Config configures a lab. The zero value is usable.
type Config struct {
	WorkDir        string                           // temp dir for certs, configs, logs, data (created if empty)
	BinDir         string                           // default ~/.cache/keeplog/bin/k8s-v1.34.4
	ProvisionerBin string                           // default ~/.cache/keeplog/bin/csi-provisioner-v6.3.0/csi-provisioner
	NodeName       string                           // default the hostname
	Logf           func(format string, args ...any) // optional; default log.Printf
}

// DefaultBinDir is where hack/build-k8s.sh puts the Kubernetes binaries.
func DefaultBinDir() string {
	return filepath.Join(cacheDir(), "bin", "k8s-"+KubernetesVersion)
}

// DefaultProvisionerBin is where hack/build-k8s.sh puts csi-provisioner.
func DefaultProvisionerBin() string {
	return filepath.Join(cacheDir(), "bin", "csi-provisioner-"+ProvisionerVersion, "csi-provisioner")
}

func cacheDir() string {
	if d := os.Getenv("KEEPLOG_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "keeplog")
}

type labPorts struct {
	etcdClient, etcdPeer, apiserver, controllerManager, scheduler, kubelet, kubeletHealthz int
}

// Lab is a running single-node cluster. Stop it with Stop.
type Lab struct {
	cfg            Config
	workDir        string
	createdWorkDir bool
	logDir         string
	nodeName       string
	ports          labPorts
	pki            *pki
	etcdURL        string
	apiURL         string
	kubeconfig     string
	restConfig     *rest.Config
	client         kubernetes.Interface
	containerdSock string

	// Host paths the lab's daemons create outside the WorkDir when they are missing.
	createdKubeletDir       bool // /var/lib/kubelet
	createdRunContainerd    bool // /run/containerd (the shims' socket dir /run/containerd/s)
	createdVarLogContainers bool // /var/log/containers (kubelet's container log symlinks)
	kubeletStarted          bool
	savedSysctls            map[string]string // kernel settings as they were before the kubelet

	mu    sync.Mutex
	procs []*Process

	stopOnce sync.Once
	stopErr  error
	lock     *os.File // the machine's lab lock, held from Start to Stop
}

// Start starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd and
// kubelet, imports the busybox and pause images, and waits until the node is Ready and the
// `default` ServiceAccount exists. On error everything started so far is stopped again.
func Start(ctx context.Context, cfg Config) (*Lab, error) {
	start := time.Now()
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("lab: must run as root (euid %d): the kubelet mounts volumes and manages cgroups", os.Geteuid())
	}
	if cfg.BinDir == "" {
		cfg.BinDir = DefaultBinDir()
	}
	if cfg.ProvisionerBin == "" {
		cfg.ProvisionerBin = DefaultProvisionerBin()
	}
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl"} {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, b)); err != nil {
			return nil, fmt.Errorf("lab: %s missing in BinDir %s (run hack/build-k8s.sh): %w", b, cfg.BinDir, err)
		}
	}
	l := &Lab{cfg: cfg}
	if cfg.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("lab: no NodeName given and hostname unknown: %w", err)
		}
		cfg.NodeName = h
	}
	l.nodeName = strings.ToLower(cfg.NodeName)
	l.cfg = cfg
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "keeplog-lab-")
		if err != nil {
			return nil, fmt.Errorf("lab: create work dir: %w", err)
		}
		l.workDir, l.createdWorkDir = d, true
	} else {
		abs, err := filepath.Abs(cfg.WorkDir)
		if err != nil {
			return nil, fmt.Errorf("lab: work dir %q: %w", cfg.WorkDir, err)
		}
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return nil, fmt.Errorf("lab: create work dir %s: %w", abs, err)
		}
		l.workDir = abs
	}
	l.logDir = filepath.Join(l.workDir, "logs")
	if err := os.MkdirAll(l.logDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: create log dir %s: %w", l.logDir, err)
	}
	lock, err := lockMachine(ctx, cfg.Logf)
	if err != nil {
		if l.createdWorkDir {
			_ = os.RemoveAll(l.workDir)
		}
		return nil, fmt.Errorf("lab: %w", err)
	}
	l.lock = lock
	l.logf("starting Kubernetes %s lab for node %q in %s", KubernetesVersion, l.nodeName, l.workDir)

	if err := l.start(ctx); err != nil {
		if stopErr := l.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup after failed start: %w", stopErr))
		}
		return nil, fmt.Errorf("lab: start (logs in %s): %w", l.logDir, err)
	}
	l.logf("lab up in %s: kubeconfig %s", time.Since(start).Round(10*time.Millisecond), l.kubeconfig)
	return l, nil
}

func (l *Lab) start(ctx context.Context) error {
	ports, err := freePorts(7)
	if err != nil {
		return err
	}
	l.ports = labPorts{ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6]}
	if l.pki, err = newPKI(filepath.Join(l.workDir, "pki"), l.nodeName); err != nil {
		return err
	}
	if err := l.startEtcd(ctx); err != nil {
		return err
	}
	if err := l.startAPIServer(ctx); err != nil {
		return err
	}
	l.kubeconfig = filepath.Join(l.workDir, "admin.kubeconfig")
	if err := writeKubeconfig(l.kubeconfig, l.apiURL, l.pki.CACert, "admin", l.pki.AdminToken); err != nil {
		return err
	}
	l.restConfig = &rest.Config{
		Host:            l.apiURL,
		BearerToken:     l.pki.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAFile: l.pki.CACert},
		QPS:             50,
		Burst:           100,
		Timeout:         30 * time.Second,
	}
	if l.client, err = kubernetes.NewForConfig(l.restConfig); err != nil {
		return fmt.Errorf("create client for %s: %w", l.apiURL, err)
	}
	if err := l.startControllerManager(ctx); err != nil {
		return err
	}
	if err := l.startScheduler(ctx); err != nil {
		return err
	}
	if err := l.startContainerd(ctx); err != nil {
		return err
	}
	l.kubeletStarted = true
	if err := l.startKubelet(ctx); err != nil {
		return err
	}
	return l.WaitDefaultServiceAccount(ctx, 2*time.Minute)
}

func (l *Lab) logf(format string, args ...any) {
	if l.cfg.Logf != nil {
		l.cfg.Logf("lab: "+format, args...)
	}
}

// Kubeconfig is the path of the admin kubeconfig (user in system:masters).
func (l *Lab) Kubeconfig() string { return l.kubeconfig }

// Client is a clientset with the admin identity.
func (l *Lab) Client() kubernetes.Interface { return l.client }

// RESTConfig is a copy of the admin client configuration.
func (l *Lab) RESTConfig() *rest.Config { return rest.CopyConfig(l.restConfig) }

// NodeName is the name of the lab's single node.
func (l *Lab) NodeName() string { return l.nodeName }

// WorkDir is the lab's working directory.
func (l *Lab) WorkDir() string { return l.workDir }

// LogDir holds one <name>.log per process (and pods/ with the kubelet's container logs).
func (l *Lab) LogDir() string { return l.logDir }

// BusyboxImage is the local image reference to use in pods (with imagePullPolicy: Never).
func (l *Lab) BusyboxImage() string { return BusyboxImageRef }

// APIServerURL is the https URL of kube-apiserver on 127.0.0.1.
func (l *Lab) APIServerURL() string { return l.apiURL }

// ContainerdSocket is the path of the lab containerd's socket.
func (l *Lab) ContainerdSocket() string { return l.containerdSock }

// Kubectl runs the v1.34.4 kubectl with the admin kubeconfig and returns its stdout; on failure
// the error carries stderr.
func (l *Lab) Kubectl(ctx context.Context, args ...string) (string, error) {
	// --cache-dir keeps kubectl's discovery cache out of ~/.kube.
	full := append([]string{"--kubeconfig=" + l.kubeconfig, "--cache-dir=" + filepath.Join(l.workDir, "kubectl-cache")}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(l.cfg.BinDir, "kubectl"), full...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// StartProcess starts a process tracked by the lab: its environment is os.Environ() plus env,
// its output goes to LogDir()/<name>.log, and Stop stops it by PID (before the kubelet and the
// control plane). It is killed too if the test process dies.
func (l *Lab) StartProcess(name string, argv []string, env []string) (*Process, error) {
	return l.startComponent(name, argv, env)
}

func (l *Lab) startComponent(name string, argv []string, env []string) (*Process, error) {
	if strings.ContainsAny(name, "/\x00") || name == "" {
		return nil, fmt.Errorf("start process: invalid name %q (used as a log file name)", name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p, err := startProcess(name, argv, env, filepath.Join(l.logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	l.procs = append(l.procs, p)
	l.logf("started %s (pid %d), log %s", name, p.Pid(), p.LogPath())
	return p, nil
}

// Processes returns every process the lab started, in start order.
func (l *Lab) Processes() []*Process {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Process(nil), l.procs...)
}

// ProvisionerArgs is the argv for csi-provisioner v6.3.0 deployed next to a node-local CSI driver
// listening on csiSocket. The caller must set the environment variable NODE_NAME=l.NodeName().
// (Topology is GA in v6 and on by default, so no feature gate is needed.)
func (l *Lab) ProvisionerArgs(csiSocket string) []string {
	return []string{l.cfg.ProvisionerBin,
		"--csi-address=" + csiSocket,
		"--kubeconfig=" + l.kubeconfig,
		"--node-deployment=true",
		"--extra-create-metadata=true",
		"--leader-election=false",
		"--timeout=30s",
		"--retry-interval-start=500ms",
		"--retry-interval-max=5s",
		"--worker-threads=10",
		"--v=5",
	}
}
