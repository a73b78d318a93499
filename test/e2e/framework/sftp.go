package framework

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/keeplog/keeplog/internal/sshdtest"
	"github.com/keeplog/keeplog/pkg/archiver"
	"github.com/keeplog/keeplog/pkg/store"
)

// SFTP is a real OpenSSH sftp server on 127.0.0.1 for the archiver, with a Secret-shaped target directory that
// keeplog reads through --archive-target (one file per key, as a mounted Secret).
type SFTP struct {
	Server *sshdtest.Server
	// TargetDir is what --archive-target points at.
	TargetDir string
	// BaseDir is the archive's base directory as the SFTP client sees it.
	BaseDir string
}

// StartSFTP starts the server (stopped at the end of the test, or when the demo runs its cleanups) and writes the
// target directory.
func StartSFTP(t sshdtest.TB) *SFTP {
	t.Helper()
	srv := sshdtest.Start(t)
	dir, err := os.MkdirTemp("", "keeplog-archive-secret-")
	if err != nil {
		t.Fatalf("archive target directory: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove the archive target directory: %v", err)
		}
	})
	s := &SFTP{Server: srv, TargetDir: dir, BaseDir: srv.RemoteDir + "/archive"}
	for k, v := range map[string]string{
		"host": srv.Host, "port": strconv.Itoa(srv.Port), "user": srv.User, "privateKey": string(srv.ClientKeyPEM),
		"knownHosts": srv.KnownHostsLine + "\n", "baseDir": s.BaseDir,
	} {
		if err := os.WriteFile(filepath.Join(s.TargetDir, k), []byte(v), 0o600); err != nil {
			t.Fatalf("archive target: %v", err)
		}
	}
	return s
}

// Through points keeplog's target at port on the server's host instead of the server's own port (a proxy in front
// of the server: the upload benchmark's delayed link) and returns a known_hosts file, with the server's host key
// for that address, for OpenSSH clients that connect there too.
func (s *SFTP) Through(t sshdtest.TB, port int) string {
	t.Helper()
	line := s.Server.KnownHostsLineFor(port) + "\n"
	f, err := os.CreateTemp("", "keeplog-known-hosts-")
	if err != nil {
		t.Fatalf("known_hosts for port %d: %v", port, err)
	}
	t.Cleanup(func() { _ = os.Remove(f.Name()) })
	_ = f.Close()
	for p, v := range map[string]string{filepath.Join(s.TargetDir, "port"): strconv.Itoa(port),
		filepath.Join(s.TargetDir, "knownHosts"): line, f.Name(): line} {
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatalf("archive target through port %d: %v", port, err)
		}
	}
	return f.Name()
}

// Flag is the keeplog flag that archives to this server.
func (s *SFTP) Flag() string { return "--archive-target=" + s.TargetDir }

// Archived is where a pod's file (its path inside the pod directory) lands on this machine's disk.
func (s *SFTP) Archived(t sshdtest.TB, pod store.PodRef, rel string) string {
	t.Helper()
	remote, err := archiver.RemotePath(s.BaseDir, pod, rel)
	if err != nil {
		t.Fatalf("remote path of %s in %s: %v", rel, pod.DirName(), err)
	}
	return filepath.Join(s.Server.DataDir, strings.TrimPrefix(remote, s.Server.RemoteDir))
}

// Files lists every file on the server, relative to its data directory.
func (s *SFTP) Files() []string {
	var out []string
	_ = filepath.WalkDir(s.Server.DataDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(s.Server.DataDir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}
