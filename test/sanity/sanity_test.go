// Package sanity runs the upstream CSI conformance suite (csi-sanity v5.6.0) against keeplog inside go test, with a
// real mounter: every publish is a real bind mount, so this must run as root.
package sanity

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"k8s.io/mount-utils"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/pkg/driver"
	"github.com/keeplog/keeplog/pkg/store"
)

func TestSanity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("csi-sanity with real bind mounts needs root (run make test as root)")
	}
	base := t.TempDir()
	st, err := store.Open(filepath.Join(base, "root"), clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	drv, err := driver.New(driver.Config{NodeID: "sanity-node", Version: "test"},
		driver.Deps{Store: st, Mounter: mount.New("")})
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(base, "csi.sock")
	l, err := driver.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- drv.Serve(ctx, l, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	cfg := sanity.NewTestConfig()
	cfg.Address = "unix://" + socket
	// csi-sanity creates and removes these itself: they must not exist, their parent must.
	cfg.TargetPath = filepath.Join(base, "mnt", "target")
	cfg.StagingPath = filepath.Join(base, "mnt", "staging")
	if err := os.MkdirAll(filepath.Join(base, "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.TestVolumeSize = 64 << 20
	cfg.IDGen = &sanity.DefaultIDGenerator{}
	// Skips happen only for capabilities keeplog does not declare: snapshots, clones, expansion, ListVolumes,
	// ControllerPublish, NodeStage, SINGLE_NODE_MULTI_WRITER, volume condition and mutable parameters.
	sanity.Test(t, cfg)

	// Every publish was undone: nothing of ours may stay mounted.
	mounts, err := mount.New("").List()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if m.Path == base || strings.HasPrefix(m.Path, base+"/") {
			t.Errorf("still mounted after the suite: %s", m.Path)
		}
	}
}
