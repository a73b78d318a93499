package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultStopTimeout is how long Stop waits after SIGTERM before it sends SIGKILL.
const DefaultStopTimeout = 15 * time.Second

// Process is a child process started by the lab. It is stopped by its PID, never by name.
type Process struct {
	name    string
	argv    []string
	logPath string
	cmd     *exec.Cmd
	logFile *os.File

	done    chan struct{}
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// startProcess starts argv with os.Environ() plus env, output appended to logPath.
// The child gets its own process group and SIGKILL when the lab's process dies,
// so a crashed test does not leave daemons behind.
func startProcess(name string, argv []string, env []string, logPath string) (*Process, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("start %s: empty argv", name)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("start %s: create log dir: %w", name, err)
	}
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log %s: %w", name, logPath, err)
	}
	if _, err := fmt.Fprintf(lf, "=== %s: %s\n", time.Now().Format(time.RFC3339), strings.Join(argv, " ")); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: write log %s: %w", name, logPath, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, argv[0], err)
	}
	p := &Process{name: name, argv: argv, logPath: logPath, cmd: cmd, logFile: lf, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// StartProcess starts a process outside any lab, with the same guarantees as the lab's own: its own process
// group, SIGKILL when the test process dies, output appended to logPath, stopped by its PID. The binary harness
// (test/binary) drives bin/keeplog and the sftp client this way without a cluster.
func StartProcess(name string, argv []string, env []string, logPath string) (*Process, error) {
	return startProcess(name, argv, env, logPath)
}

// Name is the name the process was started with (also the base name of its log file).
func (p *Process) Name() string { return p.name }

// Pid is the operating-system process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// LogPath is the file the process's stdout and stderr go to.
func (p *Process) LogPath() string { return p.logPath }

// Exited reports whether the process has exited (and been reaped).
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait blocks until the process exits and returns its exit error (nil for exit status 0).
func (p *Process) Wait() error {
	<-p.done
	return p.waitErr
}

// Signal sends sig to the process (by PID). It is a no-op once the process has exited.
func (p *Process) Signal(sig os.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %v to %s (pid %d): %w", sig, p.name, p.Pid(), err)
	}
	return nil
}

// Stop sends SIGTERM, waits up to timeout (DefaultStopTimeout when <= 0), then sends SIGKILL and
// waits for the exit. An exit caused by the lab's own signal is not an error. Safe to call twice.
func (p *Process) Stop(timeout time.Duration) error {
	p.stopOnce.Do(func() { p.stopErr = p.stop(timeout) })
	return p.stopErr
}

func (p *Process) stop(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	if p.Exited() {
		return nil
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s (pid %d) still alive 30s after SIGKILL", p.name, p.Pid())
	}
}

// LogTail returns the last n lines of the process's log (for error messages).
func (p *Process) LogTail(n int) string { return tailFile(p.logPath, n) }

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// pidAlive reports whether a process with this PID exists and is not a zombie.
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// state is the field after the ")" that closes the command name.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return true
	}
	return data[i+2] != 'Z' && data[i+2] != 'X'
}

// ProcessesReferencing returns the PIDs of live processes whose command line contains needle
// (for example a lab's WorkDir): a leak check for daemons the lab's children spawned.
func ProcessesReferencing(needle string) []int {
	if needle == "" {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		if bytes.Contains(cmdline, []byte(needle)) && pidAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killShim stops a containerd shim the lab did not start directly, by PID: first SIGKILL to
// every descendant (the containers' processes, which would outlive their shim), then the shim
// with SIGTERM and, after timeout, SIGKILL.
func killShim(pid int, timeout time.Duration) {
	if !pidAlive(pid) {
		return
	}
	kids := descendants(pid)
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, k := range kids {
		for time.Now().Before(deadline) && pidAlive(k) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	killPID(pid, timeout)
}

// descendants returns the PIDs of all live descendants of pid (from /proc/*/stat).
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		var p int
		if _, err := fmt.Sscanf(e.Name(), "%d", &p); err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// fields after the ")" that closes the command name: state ppid ...
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		var state string
		var ppid int
		if _, err := fmt.Sscanf(string(data[i+1:]), " %s %d", &state, &ppid); err != nil {
			continue
		}
		children[ppid] = append(children[ppid], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, c := range children[cur] {
			if pidAlive(c) {
				out = append(out, c)
			}
			queue = append(queue, c)
		}
	}
	return out
}

// killPID stops a process by its PID: SIGTERM, then SIGKILL after timeout.
func killPID(pid int, timeout time.Duration) {
	if !pidAlive(pid) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !pidAlive(pid) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && pidAlive(pid) {
		time.Sleep(100 * time.Millisecond)
	}
}
