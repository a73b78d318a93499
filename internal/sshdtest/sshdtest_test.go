package sshdtest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func dial(t *testing.T, s *Server, auth ssh.AuthMethod) (*ssh.Client, error) {
	t.Helper()
	cb, err := knownhosts.New(s.KnownHostsFile)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.Dial("tcp", s.Addr(), &ssh.ClientConfig{User: s.User, Auth: []ssh.AuthMethod{auth}, HostKeyCallback: cb})
}

func TestServerSFTPAndRestart(t *testing.T) {
	s := Start(t, Options{Password: "s3cret-pw"})
	signer, err := ssh.ParsePrivateKey(s.ClientKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	put := func(name string, auth ssh.AuthMethod) {
		t.Helper()
		conn, err := dial(t, s, auth)
		if err != nil {
			t.Fatalf("dial %s: %v\nsshd log:\n%s", s.Addr(), err, s.Log())
		}
		defer conn.Close()
		c, err := sftp.NewClient(conn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		f, err := c.Create(s.RemoteDir + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(s.DataDir, name))
		if err != nil || string(b) != "hello" {
			t.Fatalf("server-side file %s: %q, %v", name, b, err)
		}
	}
	put("a", ssh.PublicKeys(signer))
	put("b", ssh.Password("s3cret-pw"))
	if _, err := dial(t, s, ssh.Password("wrong")); err == nil {
		t.Fatal("wrong password accepted")
	}

	s.Stop()
	if _, err := dial(t, s, ssh.PublicKeys(signer)); err == nil {
		t.Fatal("dial succeeded while the server is stopped")
	}
	s.Start()
	put("c", ssh.PublicKeys(signer))
}

// After RotateHostKey, a client that trusts the old known_hosts line is refused by its host key check (a mismatch
// for this host, not an unknown host), and one that trusts the new line logs in, on the same port.
func TestRotateHostKey(t *testing.T) {
	s := Start(t)
	signer, err := ssh.ParsePrivateKey(s.ClientKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	old, oldLine, port := s.HostPublicKey, s.KnownHostsLine, s.Port
	oldCB, err := knownhosts.New(s.KnownHostsFile)
	if err != nil {
		t.Fatal(err)
	}
	s.RotateHostKey()
	if s.Port != port || s.KnownHostsLine == oldLine || bytes.Equal(s.HostPublicKey.Marshal(), old.Marshal()) {
		t.Fatalf("after the rotation: port %d (was %d), known_hosts line changed %v, host key changed %v", s.Port, port,
			s.KnownHostsLine != oldLine, !bytes.Equal(s.HostPublicKey.Marshal(), old.Marshal()))
	}
	_, err = ssh.Dial("tcp", s.Addr(), &ssh.ClientConfig{User: s.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: oldCB})
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) != 1 || !bytes.Equal(ke.Want[0].Key.Marshal(), old.Marshal()) {
		t.Fatalf("the old known_hosts line: %v, want a key mismatch against the old key", err)
	}
	c, err := dial(t, s, ssh.PublicKeys(signer))
	if err != nil {
		t.Fatalf("the new known_hosts line: %v\nsshd log:\n%s", err, s.Log())
	}
	c.Close()
}
