package archiver

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Conn is one SFTP session and what has to be closed with it.
type Conn struct {
	SFTP  *sftp.Client
	close func() error
	once  sync.Once
	err   error
}

// NewConn wraps an SFTP client; closeFn (may be nil) runs after the client
// is closed, e.g. to close the SSH connection under it.
func NewConn(c *sftp.Client, closeFn func() error) *Conn {
	return &Conn{SFTP: c, close: closeFn}
}

// Close closes the SFTP client and the transport under it (once).
func (c *Conn) Close() error {
	c.once.Do(func() {
		c.err = c.SFTP.Close()
		if c.close != nil {
			if err := c.close(); err != nil && c.err == nil {
				c.err = err
			}
		}
	})
	return c.err
}

// Dialer opens sessions to the archive server (SSHDialer: SFTP).
type Dialer interface {
	Dial(ctx context.Context) (Remote, error)
}

// SSHDialer connects with golang.org/x/crypto/ssh and checks the server's
// host key against Target.KnownHosts. There is no insecure mode.
type SSHDialer struct {
	target      Target
	config      *ssh.ClientConfig
	timeout     time.Duration
	requests    int
	keepalive   time.Duration
	sftpOptions []sftp.ClientOption
}

// SSHDialerOptions tune an SSHDialer; zero values take defaults.
type SSHDialerOptions struct {
	// ConnectTimeout bounds TCP connect + SSH handshake + SFTP start. 30s.
	ConnectTimeout time.Duration
	// ConcurrentRequests is the number of SFTP write requests in flight per
	// file. 16 (as Config.ConcurrentRequests).
	ConcurrentRequests int
	// Keepalive interval; a connection that does not answer two in a row is
	// closed. 15s.
	Keepalive time.Duration
}

// NewSSHDialer validates t and prepares an SSH client configuration.
func NewSSHDialer(t Target, o SSHDialerOptions) (*SSHDialer, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	hostKeys, err := parseKnownHosts(t.KnownHosts)
	if err != nil {
		return nil, fmt.Errorf("sftp target knownHosts: %w", err)
	}
	var auth []ssh.AuthMethod
	if t.PrivateKey != "" {
		s, err := t.signer()
		if err != nil {
			return nil, fmt.Errorf("sftp target privateKey: %w", err)
		}
		auth = append(auth, ssh.PublicKeys(s))
	}
	if t.Password != "" {
		pw := t.Password
		auth = append(auth, ssh.Password(pw), ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
			ans := make([]string, len(qs))
			for i := range ans {
				ans[i] = pw
			}
			return ans, nil
		}))
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 30 * time.Second
	}
	if o.ConcurrentRequests == 0 {
		o.ConcurrentRequests = 16
	}
	if o.Keepalive == 0 {
		o.Keepalive = 15 * time.Second
	}
	cfg := &ssh.ClientConfig{
		User:              t.User,
		Auth:              auth,
		HostKeyCallback:   hostKeys,
		HostKeyAlgorithms: knownKeyAlgorithms(hostKeys, t.Addr()),
		Timeout:           o.ConnectTimeout,
		ClientVersion:     "SSH-2.0-keeplog",
	}
	// AES-GCM first: with AES-NI it is the fastest cipher on both ends.
	cfg.Ciphers = []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305, ssh.CipherAES128CTR, ssh.CipherAES256CTR}
	return &SSHDialer{
		target: t, config: cfg, timeout: o.ConnectTimeout, requests: o.ConcurrentRequests, keepalive: o.Keepalive,
		sftpOptions: []sftp.ClientOption{
			sftp.UseConcurrentWrites(true),
			sftp.MaxConcurrentRequestsPerFile(o.ConcurrentRequests),
		},
	}, nil
}

const (
	// limitsExtension is advertised by OpenSSH's sftp-server (8.6 and later).
	limitsExtension = "limits@openssh.com"
	// openSSHMaxWrite is the max-write-length OpenSSH's sftp-server reports in its limits: its 256 KiB message
	// limit less 1 KiB for the request's header.
	openSSHMaxWrite = 256*1024 - 1024
)

// Dial connects, authenticates and starts the SFTP subsystem.
func (d *SSHDialer) Dial(ctx context.Context) (Remote, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	addr := d.target.Addr()
	var nd net.Dialer
	tcp, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to sftp server %s: %w", addr, err)
	}
	// Bound the handshake by the context.
	stop := context.AfterFunc(ctx, func() { _ = tcp.SetDeadline(time.Unix(1, 0)) })
	if dl, ok := ctx.Deadline(); ok {
		_ = tcp.SetDeadline(dl)
	}
	pc := newPacketConn(tcp)
	c, chans, reqs, err := ssh.NewClientConn(pc, addr, d.config)
	if err != nil {
		stop()
		_ = tcp.Close()
		return nil, fmt.Errorf("%sssh handshake with %s as user %q: %w", handshakeCause(err), addr, d.target.User, err)
	}
	negotiated(pc, c)
	client := ssh.NewClient(c, chans, reqs)
	sc, err := newSFTPClient(client, d.sftpOptions...)
	if !stop() || ctx.Err() != nil {
		if sc != nil {
			_ = sc.Close()
		}
		_ = client.Close()
		return nil, fmt.Errorf("start sftp on %s: %w", addr, context.Cause(ctx))
	}
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("start sftp subsystem on %s: %w", addr, err)
	}
	if _, ok := sc.HasExtension(limitsExtension); ok {
		// An OpenSSH sftp-server: it takes writes of up to openSSHMaxWrite bytes, 8x the 32 KiB every server
		// must take. Fewer, larger requests are markedly faster (see BenchmarkUploadVsSFTPClient).
		_ = sc.Close()
		sc, err = newSFTPClient(client, append(d.sftpOptions, sftp.MaxPacketUnchecked(openSSHMaxWrite))...)
		if err != nil {
			_ = client.Close()
			return nil, fmt.Errorf("restart sftp subsystem on %s with large writes: %w", addr, err)
		}
	}
	_ = tcp.SetDeadline(time.Time{})
	done := make(chan struct{})
	go keepalive(client, d.keepalive, done)
	return NewConn(sc, func() error {
		close(done)
		return client.Close()
	}), nil
}

// newSFTPClient starts the SFTP subsystem on a new session of c, as sftp.NewClient does, with the request stream
// going through a createModeWriter: every file keeplog creates on the server is created with mode 0600.
func newSFTPClient(c *ssh.Client, opts ...sftp.ClientOption) (*sftp.Client, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, err
	}
	w, err := s.StdinPipe()
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	r, err := s.StdoutPipe()
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	if err := s.RequestSubsystem("sftp"); err != nil {
		_ = s.Close()
		return nil, err
	}
	sc, err := sftp.NewClientPipe(r, &sessionWriter{createModeWriter: newCreateModeWriter(w, remoteFileMode), s: s}, opts...)
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	return sc, nil
}

// sessionWriter closes the SSH session with the SFTP client's request stream, so that a client replaced after
// the limits check does not leave its session open.
type sessionWriter struct {
	*createModeWriter
	s *ssh.Session
}

func (w *sessionWriter) Close() error {
	err := w.createModeWriter.Close()
	_ = w.s.Close()
	return err
}

// keepalive closes the connection when the server stops answering, so that
// uploads on a dead connection fail instead of hanging.
func keepalive(c *ssh.Client, every time.Duration, done <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		res := make(chan error, 1)
		go func() {
			_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
			res <- err
		}()
		select {
		case <-done:
			return
		case err := <-res:
			if err != nil {
				_ = c.Close()
				return
			}
			missed = 0
		case <-time.After(every):
			missed++
			if missed >= 2 {
				_ = c.Close()
				return
			}
		}
	}
}

// parseKnownHosts turns known_hosts text into a host key callback. The
// knownhosts package reads files only, so the text goes through a private
// temporary file, removed before it returns (knownhosts.New has read it by then); a file that cannot be removed
// fails the parse rather than being left behind.
func parseKnownHosts(text string) (cb ssh.HostKeyCallback, err error) {
	f, err := os.CreateTemp("", "keeplog-known-hosts-")
	if err != nil {
		return nil, fmt.Errorf("temporary known_hosts file: %w", err)
	}
	defer func() {
		if rerr := os.Remove(f.Name()); rerr != nil && err == nil {
			cb, err = nil, fmt.Errorf("remove temporary known_hosts file: %w", rerr)
		}
	}()
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return nil, fmt.Errorf("write temporary known_hosts file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write temporary known_hosts file: %w", err)
	}
	cb, err = knownhosts.New(f.Name())
	if err != nil {
		return nil, err
	}
	return cb, nil
}

// knownKeyAlgorithms lists the host key algorithms known_hosts has for addr,
// so that the server is asked for a key we can check (nil = library default).
func knownKeyAlgorithms(cb ssh.HostKeyCallback, addr string) []string {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil
	}
	tcpAddr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil {
			tcpAddr.IP = ip
		}
	}
	var ke *knownhosts.KeyError
	if err := cb(addr, tcpAddr, probe); !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, k := range ke.Want {
		t := k.Key.Type()
		var add []string
		switch t {
		case ssh.KeyAlgoRSA:
			add = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		default:
			add = []string{t}
		}
		for _, a := range add {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}
