package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/mount-utils"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/loopfs"
	"github.com/keeplog/keeplog/pkg/driver"
	"github.com/keeplog/keeplog/pkg/gc"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
)

// TestRootSharingKubeletsFilesystem puts keeplog's root and a fake kubelet root dir on one real ext4 filesystem
// with few inodes (a loop device), kubelet's pod logs elsewhere, no runtime directory. keeplog finds and exports the
// sharing, takes the lower defaults (inodes at 82% in use are pressure at 80%, not at 90%), refuses a new volume
// past the inode hard limit of 85% with a message that says so, and a pass deletes retained directories of empty
// files, as it does for bytes, until inodes are below 70%.
func TestRootSharingKubeletsFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop device, mkfs.ext4, mount")
	}
	mnt := loopfs.ForTest(t, 64, "-N", "2048")
	kubelet := filepath.Join(mnt, "kubelet")
	if err := os.Mkdir(kubelet, 0o755); err != nil {
		t.Fatal(err)
	}
	o := parseGC(t, "--root="+filepath.Join(mnt, "root"), "--kubelet-root-dir="+kubelet,
		"--pod-logs-dir="+t.TempDir(), "--runtime-dir="+filepath.Join(mnt, "no-runtime-here"), "--retain-for=700h")
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(o.Root, clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	c := &components{opts: o, store: st, reg: prometheus.NewRegistry()}
	c.policy = policy.NewResolver(st, nil, o.GC.policyDefaults())
	if err := setupGC(c); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP keeplog_root_shares_filesystem 1 when keeplog's root is on the same filesystem (st_dev) as the directory named by with (kubelet: its root dir; pod-logs: its container logs; runtime: the container runtime's directory), whose eviction and image garbage collection then act on the same disk.
# TYPE keeplog_root_shares_filesystem gauge
keeplog_root_shares_filesystem{with="kubelet"} 1
keeplog_root_shares_filesystem{with="pod-logs"} 0
`
	if err := testutil.GatherAndCompare(c.reg, strings.NewReader(want), "keeplog_root_shares_filesystem"); err != nil {
		t.Fatal(err)
	}
	g := c.gc
	drv, err := driver.New(driver.Config{NodeID: "node-1"}, driver.Deps{Store: st, Mounter: mount.NewFakeMounter(nil), Admission: g})
	if err != nil {
		t.Fatal(err)
	}

	// Retained pod directories of empty files until 82% of the inodes are in use: pressure at the shared
	// default of 80%.
	const vol = "v1:node-1:pvc-1"
	if _, err := st.CreateVolume(&store.Volume{ID: vol, Name: "pvc-1", Kind: store.Persistent, Node: "node-1"}); err != nil {
		t.Fatal(err)
	}
	var dirs []string
	fill := func(upTo float64) {
		t.Helper()
		for {
			u, err := gc.Statfs(o.Root)
			if err != nil {
				t.Fatal(err)
			}
			if u.InodePercent() >= upTo {
				return
			}
			dirs = append(dirs, retainedDirOfEmptyFiles(t, st, vol, len(dirs), 40))
		}
	}
	fill(82)
	if err := g.AdmitVolume(); err != nil {
		t.Fatalf("below the inode hard limit: %v", err)
	}
	fill(86)
	_, err = drv.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-2",
		VolumeCapabilities: []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}}})
	for _, w := range []string{"ResourceExhausted", "of its inodes are used", "hard limit of 85% (--disk-inode-hard-limit)", o.Root} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Fatalf("CreateVolume past the inode hard limit: %v, want it to say %q", err, w)
		}
	}
	t.Logf("refusal: %v", err)

	res, err := g.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	u, err := gc.Statfs(o.Root)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deleted) == 0 || u.InodePercent() >= 70 || u.Percent() >= 70 {
		t.Fatalf("deleted %d of %d directories; %.1f%% of inodes, %.1f%% of space in use: want inodes below 70%%", len(res.Deleted), len(dirs), u.InodePercent(), u.Percent())
	}
	for i, d := range res.Deleted {
		if d.Cause != gc.CauseInodePressure || d.Dir != dirs[i] {
			t.Fatalf("deletion %d: %+v, want %s (oldest first) for %s", i, d, dirs[i], gc.CauseInodePressure)
		}
	}
	if err := g.AdmitVolume(); err != nil {
		t.Fatalf("after the pass: %v", err)
	}
	t.Logf("deleted %d of %d directories; %.1f%% of inodes in use", len(res.Deleted), len(dirs), u.InodePercent())
}

// retainedDirOfEmptyFiles makes pod directory i of the volume with n empty files, published then unpublished.
func retainedDirOfEmptyFiles(t *testing.T, st *store.Store, vol string, i, n int) string {
	t.Helper()
	ref := store.PodRef{Namespace: "ns", Name: fmt.Sprintf("job-%d", i), UID: fmt.Sprintf("00000000-0000-0000-0000-%012d", i)}
	path, err := st.ClaimPodDir(vol, ref.DirName(), &ref)
	if err != nil {
		t.Fatal(err)
	}
	for j := range n {
		if err := os.WriteFile(filepath.Join(path, fmt.Sprintf("f%d", j)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	target := "/var/lib/kubelet/pods/" + ref.UID + "/volumes/x"
	if err := st.AddTarget(vol, store.Target{Path: target, PodDir: ref.DirName()}); err != nil {
		t.Fatal(err)
	}
	if err := st.RemoveTarget(vol, target); err != nil {
		t.Fatal(err)
	}
	return ref.DirName()
}
