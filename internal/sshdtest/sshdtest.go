// Package sshdtest starts a real OpenSSH sshd on 127.0.0.1 for tests: its own
// ed25519 host key (RotateHostKey replaces it), a throw-away user with an authorized ed25519 client key
// (and optionally a password), and an internal-sftp chroot. Everything it
// creates (the user, the directories, the sshd processes) is removed in
// t.Cleanup. It needs root and /usr/sbin/sshd (Debian: openssh-server); when
// either is missing the test fails with a message saying so: it never skips.
package sshdtest

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHDPath is where Debian's openssh-server installs the daemon.
const SSHDPath = "/usr/sbin/sshd"

// baseDir holds every server's files. The chroot must be root-owned and not
// below a world-writable directory (sshd refuses it), so not under /tmp.
const baseDir = "/var/lib/keeplog-sshdtest"

// Options change what Start sets up. The zero value is the usual setup.
type Options struct {
	// Password, when set, is given to the test user and password
	// authentication is enabled besides public keys.
	Password string
}

// TB is what the server needs of its caller: testing.TB has it, and a program that is not a test (the demo)
// can provide it too.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Cleanup(func())
}

// Server is one running (or stopped) sshd.
type Server struct {
	t TB

	// Host is always 127.0.0.1.
	Host string
	// Port is the TCP port sshd listens on (stable across Stop/Start).
	Port int
	// User is the test user allowed to log in.
	User string
	// Password is the user's password ("" unless Options.Password was set).
	Password string
	// ClientKeyPEM is the OpenSSH-format private key authorized for User.
	ClientKeyPEM []byte
	// ClientKeyFile is a 0600 file holding ClientKeyPEM (for the sftp(1) client).
	ClientKeyFile string
	// HostPublicKey is the server's host key.
	HostPublicKey ssh.PublicKey
	// KnownHostsLine is a known_hosts line for "[127.0.0.1]:Port".
	KnownHostsLine string
	// KnownHostsFile is a file holding KnownHostsLine.
	KnownHostsFile string
	// RemoteDir is the user's writable directory as seen by the SFTP client
	// (inside the chroot), e.g. "/upload".
	RemoteDir string
	// DataDir is the same directory on this machine's filesystem.
	DataDir string

	dir        string // everything of this server lives here
	configFile string
	logFile    string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start sets up and starts an sshd for the test. It fails the test (never
// skips) if sshd is not installed or the test does not run as root.
func Start(t TB, opts ...Options) *Server {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if _, err := os.Stat(SSHDPath); err != nil {
		t.Fatalf("sshdtest: %s not found (%v): install OpenSSH's server (Debian: apt-get install -y openssh-server)", SSHDPath, err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("sshdtest: must run as root (to add a test user and chroot it); running as uid %d", os.Geteuid())
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // sshd's privilege-separation directory
		t.Fatalf("sshdtest: create /run/sshd: %v", err)
	}
	if err := os.MkdirAll(baseDir, 0o755); err != nil {
		t.Fatalf("sshdtest: create %s: %v", baseDir, err)
	}
	if err := os.Chmod(baseDir, 0o755); err != nil {
		t.Fatalf("sshdtest: chmod %s: %v", baseDir, err)
	}
	dir, err := os.MkdirTemp(baseDir, "srv-")
	if err != nil {
		t.Fatalf("sshdtest: create server dir: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("sshdtest: chmod %s: %v", dir, err)
	}
	s := &Server{t: t, Host: "127.0.0.1", dir: dir, RemoteDir: "/upload", Password: o.Password}
	t.Cleanup(s.cleanup)

	etc := filepath.Join(dir, "etc")
	chroot := filepath.Join(dir, "root")
	for _, d := range []string{etc, chroot} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("sshdtest: %v", err)
		}
	}

	// Host key.
	hostPub, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("sshdtest: generate host key: %v", err)
	}
	hostKeyFile := filepath.Join(etc, "ssh_host_ed25519_key")
	writePrivateKey(t, hostKeyFile, hostPriv, "sshdtest host")
	s.HostPublicKey, err = ssh.NewPublicKey(hostPub)
	if err != nil {
		t.Fatalf("sshdtest: host public key: %v", err)
	}

	// Client key.
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("sshdtest: generate client key: %v", err)
	}
	s.ClientKeyFile = filepath.Join(etc, "client_ed25519_key")
	s.ClientKeyPEM = writePrivateKey(t, s.ClientKeyFile, clientPriv, "sshdtest client")
	sshClientPub, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		t.Fatalf("sshdtest: client public key: %v", err)
	}
	authKeys := filepath.Join(etc, "authorized_keys")
	if err := os.WriteFile(authKeys, ssh.MarshalAuthorizedKey(sshClientPub), 0o644); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}

	// User.
	s.User = "klsftp" + randHex(t, 4)
	s.addUser(o.Password)

	// The user's writable directory inside the root-owned chroot.
	s.DataDir = filepath.Join(chroot, strings.TrimPrefix(s.RemoteDir, "/"))
	if err := os.Mkdir(s.DataDir, 0o755); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	uid, gid := s.lookupUser()
	if err := os.Chown(s.DataDir, uid, gid); err != nil {
		t.Fatalf("sshdtest: chown %s: %v", s.DataDir, err)
	}

	s.logFile = filepath.Join(etc, "sshd.log")
	s.configFile = filepath.Join(etc, "sshd_config")
	s.KnownHostsFile = filepath.Join(etc, "known_hosts")

	// Port: pick a free one; if sshd loses a race for it, try another.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s.Port = freePort(t)
		s.writeConfig(hostKeyFile, authKeys, chroot, o.Password != "")
		if lastErr = s.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("sshdtest: %v", lastErr)
	}
	s.writeKnownHosts()
	return s
}

// Addr is "127.0.0.1:<port>".
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Stop kills sshd and every process it started (the per-connection
// processes, which outlive the listener otherwise), so open connections
// break. Start brings it back on the same port with the same keys.
func (s *Server) Stop() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.killTree()
}

// Start restarts a stopped server on the same port.
func (s *Server) Start() {
	s.t.Helper()
	var err error
	for attempt := 0; attempt < 50; attempt++ { // the port may linger briefly
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("sshdtest: restart: %v", err)
}

// Log returns what sshd logged so far (for failure messages).
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logFile)
	return string(b)
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	// Check the configuration first: a clear message beats a dead daemon.
	if out, err := exec.Command(SSHDPath, "-t", "-f", s.configFile).CombinedOutput(); err != nil {
		return fmt.Errorf("sshd -t -f %s: %v: %s", s.configFile, err, bytes.TrimSpace(out))
	}
	cmd := exec.Command(SSHDPath, "-D", "-f", s.configFile, "-E", s.logFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %v", SSHDPath, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("sshd on port %d exited at start (%v); its log:\n%s", s.Port, err, s.Log())
		default:
		}
		if bannerOK(s.Addr()) {
			s.cmd = cmd
			// The goroutine above owns Wait and reaps sshd when it dies; exited is buffered, so it never blocks.
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			waitErr := <-exited
			return fmt.Errorf("sshd on port %d did not answer within 10s (killed: %v); its log:\n%s", s.Port, waitErr, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killTree kills sshd's descendants and then sshd itself, by PID.
func (s *Server) killTree() {
	pid := s.cmd.Process.Pid
	// Stop the listener first so that no new children appear.
	_ = s.cmd.Process.Signal(syscall.SIGSTOP)
	for round := 0; round < 3; round++ {
		for _, d := range descendants(pid) {
			_ = syscall.Kill(d, syscall.SIGKILL)
		}
	}
	_ = s.cmd.Process.Kill()
	// Wait until the process and its children are gone (zombies of the
	// children are reaped by init once their parent died).
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) && len(descendants(pid)) == 0 {
			break
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || procState(st) == "Z" {
			if len(descendants(pid)) == 0 {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.cmd = nil
}

func (s *Server) cleanup() {
	s.mu.Lock()
	if s.cmd != nil {
		s.killTree()
	}
	s.mu.Unlock()
	if s.User != "" {
		s.delUser()
	}
	if err := os.RemoveAll(s.dir); err != nil {
		s.t.Errorf("sshdtest: remove %s: %v", s.dir, err)
	}
	_ = os.Remove(baseDir) // only if empty: other servers may be running
}

func (s *Server) writeConfig(hostKey, authKeys, chroot string, password bool) {
	pw := "no"
	if password {
		pw = "yes"
	}
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PubkeyAuthentication yes
PasswordAuthentication %s
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
StrictModes yes
AllowUsers %s
MaxStartups 100:30:200
MaxSessions 50
LogLevel VERBOSE
Subsystem sftp internal-sftp
Match User %s
	ChrootDirectory %s
	ForceCommand internal-sftp
	AllowTcpForwarding no
	X11Forwarding no
	PermitTTY no
`, s.Port, hostKey, filepath.Join(s.dir, "etc", "sshd.pid"), authKeys, pw, s.User, s.User, chroot)
	if err := os.WriteFile(s.configFile, []byte(cfg), 0o644); err != nil {
		s.t.Fatalf("sshdtest: %v", err)
	}
}

func (s *Server) addUser(password string) {
	run := func(name string, stdin string, args ...string) error {
		var last error
		for attempt := 0; attempt < 20; attempt++ { // useradd/userdel fail while another holds /etc/passwd's lock
			cmd := exec.Command(name, args...)
			cmd.Stdin = strings.NewReader(stdin)
			out, err := cmd.CombinedOutput()
			if err == nil {
				return nil
			}
			last = fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
			time.Sleep(time.Duration(50+attempt*50) * time.Millisecond)
		}
		return last
	}
	// -p '*': a locked account ("!") is refused by sshd with UsePAM no.
	if err := run("useradd", "", "-M", "-d", "/", "-s", "/usr/sbin/nologin", "-p", "*", "-U", s.User); err != nil {
		s.User = ""
		s.t.Fatalf("sshdtest: add test user: %v", err)
	}
	if password != "" {
		if err := run("chpasswd", s.User+":"+password+"\n"); err != nil {
			s.t.Fatalf("sshdtest: set password of %s: %v", s.User, err)
		}
	}
}

func (s *Server) delUser() {
	var last error
	for attempt := 0; attempt < 20; attempt++ {
		out, err := exec.Command("userdel", s.User).CombinedOutput()
		if err == nil {
			return
		}
		last = fmt.Errorf("userdel %s: %v: %s", s.User, err, bytes.TrimSpace(out))
		time.Sleep(time.Duration(50+attempt*50) * time.Millisecond)
	}
	s.t.Errorf("sshdtest: %v", last)
}

func (s *Server) lookupUser() (uid, gid int) {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		s.t.Fatalf("sshdtest: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 4 && fields[0] == s.User {
			uid, err1 := strconv.Atoi(fields[2])
			gid, err2 := strconv.Atoi(fields[3])
			if err1 == nil && err2 == nil {
				return uid, gid
			}
		}
	}
	s.t.Fatalf("sshdtest: user %s not found in /etc/passwd after useradd", s.User)
	return 0, 0
}

func writePrivateKey(t TB, file string, key ed25519.PrivateKey, comment string) []byte {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(key, comment)
	if err != nil {
		t.Fatalf("sshdtest: marshal %s key: %v", comment, err)
	}
	b := pem.EncodeToMemory(block)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	return b
}

func randHex(t TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	return hex.EncodeToString(b)
}

func freePort(t TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sshdtest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// bannerOK reports whether an SSH server answers on addr.
func bannerOK(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-")
}

// descendants lists the PIDs whose parent chain leads to pid.
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	parent := map[int]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if pp, ok := procPPID(st); ok {
			parent[p] = pp
		}
	}
	var out []int
	for p := range parent {
		for q, hops := parent[p], 0; q > 1 && hops < 64; q, hops = parent[q], hops+1 {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// procPPID parses the parent PID out of /proc/<pid>/stat ("pid (comm) S ppid ...").
func procPPID(stat []byte) (int, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	pp, err := strconv.Atoi(f[1])
	return pp, err == nil
}

func procState(stat []byte) string {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 1 {
		return ""
	}
	return f[0]
}
