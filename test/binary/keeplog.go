package binary

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/keeplog/keeplog/test/e2e/lab"
)

// Config says how to run one keeplog process.
type Config struct {
	// Bin is the keeplog binary; empty: FindBinary.
	Bin string
	// WorkDir holds the root, the CSI socket and the log (created if missing). Required.
	WorkDir string
	// NodeID is --node-id (default "soak-node").
	NodeID string
	// ArchiveTarget is --archive-target (empty: no archiving).
	ArchiveTarget string
	// Kubeconfig is --kubeconfig; empty runs keeplog with no API (reduced metadata): no in-cluster environment is
	// passed on either.
	Kubeconfig string
	// Args are further flags (they come last and override).
	Args []string
	// Env are further environment variables ("NAME=value"), after the test's own and the empty in-cluster ones.
	Env []string
	// ReadyTimeout bounds each start's wait for the CSI socket and /healthz (default 1m): a root of thousands of
	// retained directories on a loaded machine takes longer.
	ReadyTimeout time.Duration
}

// Keeplog is one keeplog process, restartable with the same root, socket and HTTP port.
type Keeplog struct {
	cfg Config
	// Root is --root, Socket the CSI unix socket path, HTTPAddr the --http-address (127.0.0.1:port), LogPath the
	// file its stdout and stderr go to (appended across restarts).
	Root, Socket, HTTPAddr, LogPath string

	proc   *lab.Process
	starts int
}

// FindBinary is $KEEPLOG_BIN, else bin/keeplog of the module that contains the working directory (go test runs
// in the package directory).
func FindBinary() (string, error) {
	if b := os.Getenv("KEEPLOG_BIN"); b != "" {
		return b, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			b := filepath.Join(dir, "bin", "keeplog")
			if _, err := os.Stat(b); err != nil {
				return "", fmt.Errorf("%s missing: run make build (%w)", b, err)
			}
			return b, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: set KEEPLOG_BIN")
		}
		dir = parent
	}
}

// FreePort returns a loopback TCP port nobody listens on right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartKeeplog starts keeplog and waits until it serves CSI and HTTP.
func StartKeeplog(ctx context.Context, cfg Config) (*Keeplog, error) {
	if cfg.WorkDir == "" {
		return nil, errors.New("binary: Config.WorkDir is required")
	}
	if cfg.Bin == "" {
		b, err := FindBinary()
		if err != nil {
			return nil, err
		}
		cfg.Bin = b
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "soak-node"
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	k := &Keeplog{cfg: cfg, Root: filepath.Join(cfg.WorkDir, "root"), Socket: filepath.Join(cfg.WorkDir, "csi.sock"),
		HTTPAddr: "127.0.0.1:" + strconv.Itoa(port), LogPath: filepath.Join(cfg.WorkDir, "keeplog.log")}
	return k, k.Start(ctx)
}

func (k *Keeplog) argv() []string {
	a := []string{k.cfg.Bin, "--node-id=" + k.cfg.NodeID, "--root=" + k.Root, "--endpoint=unix://" + k.Socket,
		"--http-address=" + k.HTTPAddr, "--pod-logs-dir=" + filepath.Join(k.cfg.WorkDir, "pods")}
	if k.cfg.ArchiveTarget != "" {
		a = append(a, "--archive-target="+k.cfg.ArchiveTarget)
	}
	if k.cfg.Kubeconfig != "" {
		a = append(a, "--kubeconfig="+k.cfg.Kubeconfig)
	}
	return append(a, k.cfg.Args...)
}

// Start starts the process (again, after Kill or Stop) and waits until it is ready.
func (k *Keeplog) Start(ctx context.Context) error {
	if k.proc != nil && !k.proc.Exited() {
		return fmt.Errorf("keeplog (pid %d) is still running", k.proc.Pid())
	}
	_ = os.Remove(k.Socket) // a SIGKILLed keeplog leaves it; keeplog removes a stale one too
	if err := os.MkdirAll(filepath.Join(k.cfg.WorkDir, "pods"), 0o755); err != nil {
		return err
	}
	// Empty values: no in-cluster configuration, whatever the caller's environment says.
	env := append([]string{"KUBERNETES_SERVICE_HOST=", "KUBERNETES_SERVICE_PORT=", "KUBECONFIG="}, k.cfg.Env...)
	p, err := lab.StartProcess("keeplog", k.argv(), env, k.LogPath)
	if err != nil {
		return err
	}
	k.proc = p
	k.starts++
	timeout := k.cfg.ReadyTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	return k.WaitReady(ctx, timeout)
}

// WaitReady waits until the CSI socket accepts connections and /healthz answers (any status: a stalled loop is
// the caller's finding, not a start failure).
func (k *Keeplog) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: time.Second}
	for {
		if k.proc.Exited() {
			return fmt.Errorf("keeplog exited at start (%v); its log:\n%s", k.proc.Wait(), k.proc.LogTail(40))
		}
		if c, err := net.DialTimeout("unix", k.Socket, time.Second); err == nil {
			c.Close()
			if resp, err := hc.Get("http://" + k.HTTPAddr + "/healthz"); err == nil {
				resp.Body.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("keeplog not ready within %s; its log:\n%s", timeout, k.proc.LogTail(40))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Pid is the running process's PID (0 before the first start).
func (k *Keeplog) Pid() int {
	if k.proc == nil {
		return 0
	}
	return k.proc.Pid()
}

// Starts counts the starts so far (1 after StartKeeplog).
func (k *Keeplog) Starts() int { return k.starts }

// Kill sends SIGKILL to the PID, as a crash or the OOM killer would, and waits until it is reaped.
func (k *Keeplog) Kill() error {
	if k.proc == nil || k.proc.Exited() {
		return nil
	}
	if err := k.proc.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-k.proc.Done():
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("keeplog (pid %d) alive 30s after SIGKILL", k.proc.Pid())
	}
}

// Stop sends SIGTERM (SIGKILL after 15 s) to the PID and waits.
func (k *Keeplog) Stop() error {
	if k.proc == nil {
		return nil
	}
	return k.proc.Stop(15 * time.Second)
}

// Exited reports whether the process has exited (a crash the caller did not cause, when it did not Kill or Stop).
func (k *Keeplog) Exited() bool { return k.proc != nil && k.proc.Exited() }

// LogTail is the last n lines of keeplog's log.
func (k *Keeplog) LogTail(n int) string {
	if k.proc == nil {
		return ""
	}
	return k.proc.LogTail(n)
}

// PodDir is where keeplog keeps a pod's directory.
func (k *Keeplog) PodDir(p Pod) string { return filepath.Join(k.Root, p.DirName()) }
