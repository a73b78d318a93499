//go:build soak

package soak

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/keeplog/keeplog/internal/fstest"
	"github.com/keeplog/keeplog/internal/sshdtest"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/archiver"
	"github.com/keeplog/keeplog/test/binary"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

// reloadLine is what keeplog logs when it takes a changed archive target Secret (cmd/keeplog/archivetarget.go).
const reloadLine = "The archive target Secret changed; the next connection uses it"

// TestBinarySFTPRotatedCredentials: a rotated SFTP credential and a rotated server host key apply without a restart,
// through the shipped binary. The target Secret is a kubelet-style Secret volume (fstest.SecretVolume) and every
// change is kubelet's: a new timestamped directory and ..data swapped to it.
//
//  1. The Secret holds a private key sshd does not accept: the log and the pod's status file say the authentication
//     failed, naming the server and user; the dump stays; nothing arrives on the server.
//  2. The server's host key is replaced (sshd restarted on the same port): with the old knownHosts, keeplog refuses
//     the server in the handshake: the error says "key mismatch" and sshd sees no authentication attempt at all.
//  3. The Secret gets the right key but still the old knownHosts: the next attempt, made with the new Secret, is
//     still refused (a right key never makes a wrong host acceptable).
//  4. The Secret gets the right key and the new knownHosts in one swap: the same keeplog process uploads the dump
//     once, and the server's copy, its manifest and the local file agree on the sha256.
//
// Neither key's material appears in the log, the status file, the journal or /metrics at any step.
func TestBinarySFTPRotatedCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("must run as root (keeplog bind-mounts, sshdtest adds a user)")
	}
	const size = 6 << 20
	ctx := context.Background()
	srv := sshdtest.Start(t)
	wrongKey, wrongPub := newClientKey(t)
	rightPub := clientPublicKey(t, srv.ClientKeyPEM)
	e := &archEnv{t: t, work: t.TempDir()}
	e.sftp = &framework.SFTP{Server: srv, BaseDir: srv.RemoteDir + "/archive"}
	secret := filepath.Join(e.work, "secret")
	if err := os.Mkdir(secret, 0o700); err != nil {
		t.Fatal(err)
	}
	oldKnownHosts := srv.KnownHostsLine + "\n"
	kv := map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "user": srv.User,
		"privateKey": string(wrongKey), "knownHosts": oldKnownHosts, "baseDir": e.sftp.BaseDir}
	vol := fstest.NewSecretVolume(t, secret, kv)
	e.sftp.TargetDir, e.secret = vol.Dir, vol.Dir
	e.start(ctx, vol.Dir, []string{"--archive-quiet-period=2s", "--retain-for=1h"})
	pid := e.kl.Pid()
	secrets := append(pemBody(wrongKey), pemBody(srv.ClientKeyPEM)...)

	src := filepath.Join(t.TempDir(), "dump.hprof")
	sum := writeRandomFile(t, src, size)
	pod := e.podWithDumps(ctx, "sftp-creds", nil, []string{src})
	local := filepath.Join(e.kl.Root, pod.DirName(), dumpName(0))

	// 1. A key the server does not accept.
	target := "ssh handshake with " + srv.Addr() + " as user \"" + srv.User + "\""
	st := waitStatusError(t, e, pod, "unable to authenticate")
	if !strings.HasPrefix(st.Error, "wrong credentials") || !strings.Contains(st.Error, target) {
		t.Errorf("the status file's error %q does not say wrong credentials first and name the server and user (%s)", st.Error, target)
	}
	t.Logf("a key the server does not accept: the status file says %q", st.Error)
	logSaysRetry(t, e, "unable to authenticate")
	logSaysRetry(t, e, srv.Addr())
	if !strings.Contains(srv.Log(), "Failed publickey for "+srv.User) || !strings.Contains(srv.Log(), ssh.FingerprintSHA256(wrongPub)) {
		t.Errorf("sshd did not see the wrong key offered; its log:\n%s", srv.Log())
	}
	noSecrets(t, ctx, e, pod, secrets...)
	sftpNothingArrived(t, e, local, sum)

	// 2. A new host key on the server; keeplog still trusts the old one.
	srv.RotateHostKey()
	sshdFrom := len(srv.Log())
	st = waitStatusError(t, e, pod, "knownhosts: key mismatch")
	if !strings.HasPrefix(st.Error, "the server's host key is not the one knownHosts names") {
		t.Errorf("the status file's error %q does not say first that the host key changed", st.Error)
	}
	t.Logf("a host key the Secret's knownHosts does not list: the status file says %q", st.Error)
	logSaysRetry(t, e, "knownhosts: key mismatch")

	// 3. The right key, the old knownHosts.
	kv["privateKey"] = string(srv.ClientKeyPEM)
	vol.Write(kv)
	waitRetryAfterReload(t, e, 1, "knownhosts: key mismatch")
	if l := srv.Log()[sshdFrom:]; strings.Contains(l, "publickey for") || strings.Contains(l, "Accepted") {
		t.Errorf("sshd saw an authentication attempt from a client that should have refused its host key:\n%s", l)
	}
	noSecrets(t, ctx, e, pod, secrets...)
	sftpNothingArrived(t, e, local, sum)

	// 4. The right key and the new knownHosts, in one swap.
	kv["knownHosts"] = srv.KnownHostsLine + "\n"
	vol.Write(kv)
	inv := e.waitArchived(ctx, 1, 2*time.Minute)
	if e.kl.Pid() != pid || e.kl.Starts() != 1 {
		t.Errorf("keeplog restarted (PID %d, then %d; %d starts): the rotated Secret must apply without one", pid, e.kl.Pid(), e.kl.Starts())
	}
	if b, err := os.ReadFile(e.kl.LogPath); err != nil || strings.Count(string(b), reloadLine) != 2 {
		t.Errorf("keeplog did not log taking each of the two rotated Secrets (%v):\n%s", err, e.kl.LogTail(20))
	}
	if !strings.Contains(srv.Log()[sshdFrom:], "Accepted publickey for "+srv.User) ||
		!strings.Contains(srv.Log()[sshdFrom:], ssh.FingerprintSHA256(rightPub)) {
		t.Errorf("sshd did not accept the rotated key; its log since the host key changed:\n%s", srv.Log()[sshdFrom:])
	}
	f := inv.Files[0]
	remote := filepath.Join(srv.DataDir, f.Rel)
	if want := e.sftp.Archived(t, pod.Ref(), dumpName(0)); remote != want {
		t.Errorf("archived at %s, want %s", remote, want)
	}
	got, err := binary.FileSHA256(remote)
	if err != nil {
		t.Fatal(err)
	}
	if lsum := fileSHA256(t, local); got != sum || lsum != sum || f.Manifest.SHA256 != sum || f.Manifest.StoredSHA256 != sum ||
		f.Manifest.Size != size || f.Size != size || f.Manifest.Path != dumpName(0) {
		t.Errorf("the server's copy hashes to %s, the local file to %s, the manifest says %+v (size %d); the dump's sha256 %s",
			got, lsum, f.Manifest, f.Size, sum)
	}
	m, err := binary.Scrape(ctx, e.kl.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	if up := m.Series(api.MetricArchiverUploadsTotal); up[`{result="success"}`] != 1 || up[`{result="retry"}`] < 3 {
		t.Errorf("uploads %v, want one success after at least three retries", up)
	}
	waitStatus(t, e, pod, "done with the dump's sha256 and no error", func(st archiver.FileStatus) bool {
		return st.State == string(archiver.StateDone) && st.Error == "" && st.SHA256 == sum
	})
	noSecrets(t, ctx, e, pod, secrets...)
}

// newClientKey makes an ed25519 key in OpenSSH's PEM format that no server authorizes.
func newClientKey(t *testing.T) ([]byte, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "not authorized")
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), sp
}

func clientPublicKey(t *testing.T, keyPEM []byte) ssh.PublicKey {
	t.Helper()
	s, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return s.PublicKey()
}

// pemBody is a PEM key's base64 lines: any one of them quoted anywhere is key material leaked.
func pemBody(keyPEM []byte) []string {
	var out []string
	for _, l := range strings.Split(string(keyPEM), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	return out
}

// sftpNothingArrived checks that the dump is still there, unchanged, and that the server holds no file of it (no
// archived file, no upload temporary).
func sftpNothingArrived(t *testing.T, e *archEnv, local, sum string) {
	t.Helper()
	if got := fileSHA256(t, local); got != sum {
		t.Errorf("the dump changed or went: %s, want %s", got, sum)
	}
	if files := e.sftp.Files(); len(files) != 0 {
		t.Errorf("the server holds %v before keeplog could log in", files)
	}
}

// waitRetryAfterReload waits until keeplog has logged reloadLine reloads times (the Secret it started with is not
// logged so: the count is of rotations taken) and, after the last, a failed attempt that says cause: an attempt made
// with the Secret it just took.
func waitRetryAfterReload(t *testing.T, e *archEnv, reloads int, cause string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		b, err := os.ReadFile(e.kl.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		log := string(b)
		if strings.Count(log, reloadLine) == reloads {
			after := log[strings.LastIndex(log, reloadLine):]
			for _, l := range strings.Split(after, "\n") {
				if strings.Contains(l, "Upload failed; will retry") && strings.Contains(l, cause) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed attempt saying %q after the Secret's rotation %d was taken, within a minute:\n%s", cause, reloads, e.kl.LogTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
