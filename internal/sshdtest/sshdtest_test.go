package sshdtest

import (
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
