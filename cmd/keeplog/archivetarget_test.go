package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/keeplog/keeplog/internal/fstest"
	"github.com/keeplog/keeplog/internal/sshdtest"
)

// A password rotated in the Secret applies to the next dial without a restart; a Secret that stops loading, or that
// changes the base directory, keeps the previous target and says so once; the log never quotes a password.
func TestArchiveTargetReloadsRotatedCredentials(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{Password: "right-" + strconv.FormatInt(time.Now().UnixNano(), 36)})
	kv := map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "user": srv.User,
		"password": "wrong-password-1", "knownHosts": srv.KnownHostsLine + "\n", "baseDir": srv.RemoteDir + "/archive"}
	vol := fstest.NewSecretVolume(t, t.TempDir(), kv)
	var logged bytes.Buffer
	log := funcr.New(func(prefix, args string) { logged.WriteString(prefix + " " + args + "\n") }, funcr.Options{})
	d, target, err := newReloadingDialer(vol.Dir, "node-a", log)
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
	vol.Write(kv)
	r, err := d.Dial(ctx)
	if err != nil {
		t.Fatalf("after the rotation, without a restart: %v\n%s", err, logged.String())
	}
	r.Close()
	if !strings.Contains(logged.String(), "The archive target Secret changed; the next connection uses it") {
		t.Errorf("the reload was not logged:\n%s", logged.String())
	}

	kv["port"] = "not-a-port"
	vol.Write(kv)
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
	vol.Write(kv)
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
