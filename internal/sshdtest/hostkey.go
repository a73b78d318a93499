package sshdtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// RotateHostKey gives the server a new ed25519 host key, as an operator who replaces a server's keys does: sshd is
// stopped (open connections break), its host key file replaced, and sshd started again on the same port. Afterwards
// HostPublicKey, KnownHostsLine and KnownHostsFile describe the new key only: a client that still trusts the old
// line is refused by its own host key check, before it authenticates.
func (s *Server) RotateHostKey() {
	s.t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		s.t.Fatalf("sshdtest: generate host key: %v", err)
	}
	hostPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		s.t.Fatalf("sshdtest: host public key: %v", err)
	}
	s.Stop()
	writePrivateKey(s.t, filepath.Join(s.dir, "etc", "ssh_host_ed25519_key"), priv, "sshdtest host")
	s.HostPublicKey = hostPub
	s.writeKnownHosts()
	s.Start()
}

// KnownHostsLineFor is a known_hosts line with the server's host key for its host at port: its own (KnownHostsLine),
// or that of a proxy in front of it.
func (s *Server) KnownHostsLineFor(port int) string {
	return knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort(s.Host, strconv.Itoa(port)))}, s.HostPublicKey)
}

// writeKnownHosts sets KnownHostsLine from HostPublicKey and writes it to KnownHostsFile.
func (s *Server) writeKnownHosts() {
	s.t.Helper()
	s.KnownHostsLine = s.KnownHostsLineFor(s.Port)
	if err := os.WriteFile(s.KnownHostsFile, []byte(s.KnownHostsLine+"\n"), 0o644); err != nil {
		s.t.Fatalf("sshdtest: %v", err)
	}
}
