package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/keeplog/keeplog/internal/sshdtest"
)

// secretVolume writes kv as kubelet lays out a Secret volume: the keys are symlinks into ..data, itself a symlink to
// a timestamped directory that is replaced as a whole (the new directory written, then ..data swapped by rename).
type secretVolume struct {
	t   *testing.T
	dir string
	gen int
}

func (s *secretVolume) write(kv map[string]string) {
	s.t.Helper()
	s.gen++
	ts := "..2026_12_01_" + strconv.Itoa(s.gen)
	if err := os.Mkdir(filepath.Join(s.dir, ts), 0o700); err != nil {
		s.t.Fatal(err)
	}
	for k, v := range kv {
		if err := os.WriteFile(filepath.Join(s.dir, ts, k), []byte(v), 0o600); err != nil {
			s.t.Fatal(err)
		}
		link := filepath.Join(s.dir, k)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", k), link); err != nil {
				s.t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(s.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "..data")); err != nil {
		s.t.Fatal(err)
	}
}

// A password rotated in the Secret applies to the next dial without a restart; a Secret that stops loading, or that
// changes the base directory, keeps the previous target and says so once; the log never quotes a password.
func TestArchiveTargetReloadsRotatedCredentials(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{Password: "right-" + strconv.FormatInt(time.Now().UnixNano(), 36)})
	vol := &secretVolume{t: t, dir: t.TempDir()}
	kv := map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "user": srv.User,
		"password": "wrong-password-1", "knownHosts": srv.KnownHostsLine + "\n", "baseDir": srv.RemoteDir + "/archive"}
	vol.write(kv)
	var logged bytes.Buffer
	log := funcr.New(func(prefix, args string) { logged.WriteString(prefix + " " + args + "\n") }, funcr.Options{})
	d, target, err := newReloadingDialer(vol.dir, "node-a", log)
	if err != nil {
		t.Fatal(err)
	}
	if target.BaseDir != srv.RemoteDir+"/archive" {
		t.Fatalf("base %q", target.BaseDir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r, err := d.Dial(ctx); err == nil {
		r.Close()
		t.Fatal("dialled with the wrong password")
	}

	kv["password"] = srv.Password
	vol.write(kv)
	r, err := d.Dial(ctx)
	if err != nil {
		t.Fatalf("after the rotation, without a restart: %v\n%s", err, logged.String())
	}
	r.Close()
	if !strings.Contains(logged.String(), "The archive target Secret changed; the next connection uses it") {
		t.Errorf("the reload was not logged:\n%s", logged.String())
	}

	kv["port"] = "not-a-port"
	vol.write(kv)
	for range 2 {
		if r, err = d.Dial(ctx); err != nil {
			t.Fatalf("a Secret that does not load must keep the previous target: %v", err)
		}
		r.Close()
	}
	if n := strings.Count(logged.String(), "changed but does not load"); n != 1 {
		t.Errorf("a Secret that does not load was logged %d times over two dials, want once:\n%s", n, logged.String())
	}

	kv["port"], kv["baseDir"], kv["password"] = strconv.Itoa(srv.Port), "/elsewhere", "wrong-password-2"
	vol.write(kv)
	if r, err = d.Dial(ctx); err != nil {
		t.Fatalf("a changed base directory must keep the previous target (it takes a restart): %v", err)
	}
	r.Close()
	if !strings.Contains(logged.String(), "takes a restart") {
		t.Errorf("a changed base directory was not reported:\n%s", logged.String())
	}
	for _, secret := range []string{srv.Password, "wrong-password-1", "wrong-password-2"} {
		if strings.Contains(logged.String(), secret) {
			t.Errorf("the log quotes a password:\n%s", logged.String())
		}
	}
}
