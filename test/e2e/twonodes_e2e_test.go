//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keeplog/keeplog/internal/fstest"
	"github.com/keeplog/keeplog/test/binary"
	"github.com/keeplog/keeplog/test/e2e/framework"
	"github.com/keeplog/keeplog/test/e2e/lab"
)

// TestTwoNodesShareOneUploadSlot runs two bin/keeplog processes with different node IDs against the lab's one API
// server and one OpenSSH sshd, with --archive-cluster-uploads=1: the Lease semaphore must serialise their uploads,
// and the server's disk shows it (an upload's temporary file is created when it starts and renamed when it ends;
// inotify on the server's directories sees every one: fstest.TempWatch). The control run with two slots must see
// two at once, or the check could not see an overlap at all.
//
// It is an e2e test, not part of the short soak: the semaphore needs an API server, and the lab (one per machine,
// behind /run/keeplog-lab.lock, about 630 MB and 15 s to start) is the e2e suite's; the soak stays sshd-only so
// that make test's 2 minutes are spent on the archive path itself.
func TestTwoNodesShareOneUploadSlot(t *testing.T) {
	ctx := context.Background()
	l := startLab(ctx, t)
	sftp := framework.StartSFTP(t)
	for _, slots := range []int{1, 2} {
		t.Run("cluster-uploads="+strconv.Itoa(slots), func(t *testing.T) {
			rep := uploadOnTwoNodes(t, ctx, l, sftp, slots)
			for _, line := range rep.Timeline {
				t.Logf("server: %s", line)
			}
			t.Logf("%d uploads, at most %d at once on the server", rep.Seen, rep.Peak)
			switch {
			case rep.Lost:
				t.Fatalf("the watch on the server lost events (an inotify queue overflow): %+v", rep)
			case rep.Seen < 8:
				t.Fatalf("the server saw %d upload temporaries, want at least 8", rep.Seen)
			case slots == 1 && rep.Peak != 1:
				t.Fatalf("%d uploads at once with --archive-cluster-uploads=1: %v", rep.Peak, rep.Overlaps)
			case slots == 2 && rep.Peak < 2:
				t.Fatalf("the control run with 2 slots never saw two uploads at once (peak %d): the check cannot see overlaps", rep.Peak)
			}
		})
	}
}

// twoNodeDumps is how many 16 MiB dumps each pod writes (two pods per node).
const twoNodeDumps = 2

// slotNode is one of the two keeplog processes ("nodes") and its pods.
type slotNode struct {
	kl      *binary.Keeplog
	csi     *binary.CSI
	pods    []binary.Pod
	targets []string
}

// uploadOnTwoNodes starts node-a and node-b, publishes two pods on each, writes the dumps, unpublishes all four
// pods at once and waits until the server has all eight files.
func uploadOnTwoNodes(t *testing.T, ctx context.Context, l *lab.Lab, sftp *framework.SFTP, slots int) fstest.TempReport {
	var dirs []string
	var nodes []*slotNode
	for _, id := range []string{"node-a", "node-b"} {
		kl, err := binary.StartKeeplog(ctx, binary.Config{WorkDir: filepath.Join(t.TempDir(), id), NodeID: id,
			ArchiveTarget: sftp.TargetDir, Kubeconfig: l.Kubeconfig(), Args: []string{
				"--archive-cluster-uploads=" + strconv.Itoa(slots), "--archive-bandwidth=32Mi",
				"--archive-quiet-period=10m", "--namespace=kube-system"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kl.Stop() })
		c, err := binary.DialCSI(kl.Socket)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		n := &slotNode{kl: kl, csi: c}
		for i := range 2 {
			n.pods = append(n.pods, binary.NewPod("twonodes", fmt.Sprintf("%s-%d-%d", id, slots, i)))
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		for _, p := range n.pods {
			target := filepath.Join(t.TempDir(), "mount")
			if err := n.csi.Publish(ctx, binary.EphemeralVolumeID(p, "logs"), target, p, true, nil); err != nil {
				t.Fatal(err)
			}
			for j := range twoNodeDumps {
				if _, err := binary.WriteFile(filepath.Join(target, "app", fmt.Sprintf("java_pid%d.hprof", j)), 16<<20, uint64(j)); err != nil {
					t.Fatal(err)
				}
			}
			dirs = append(dirs, serverDir(t, sftp, p))
			n.targets = append(n.targets, target)
		}
	}
	tw, err := binary.WatchTemps(dirs)
	if err != nil {
		t.Fatal(err)
	}
	unpublishAll(t, ctx, nodes)
	deadline := time.Now().Add(3 * time.Minute)
	for countFinals(dirs) < len(dirs)*twoNodeDumps {
		if time.Now().After(deadline) {
			tw.Stop()
			t.Fatalf("%d of %d files on the server after 3 minutes; node-a's log:\n%s\nnode-b's log:\n%s",
				countFinals(dirs), len(dirs)*twoNodeDumps, nodes[0].kl.LogTail(20), nodes[1].kl.LogTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return tw.Stop()
}

// unpublishAll unpublishes every pod of both nodes at once, so that all eight uploads want to start together.
func unpublishAll(t *testing.T, ctx context.Context, nodes []*slotNode) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for _, n := range nodes {
		for i, p := range n.pods {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- n.csi.Unpublish(ctx, binary.EphemeralVolumeID(p, "logs"), n.targets[i])
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// serverDir creates the server directory a pod's app/ dumps go to, owned by the SFTP user, so that it can be watched
// before the first upload starts.
func serverDir(t *testing.T, sftp *framework.SFTP, p binary.Pod) string {
	d := filepath.Dir(sftp.Archived(t, p.Ref(), "app/x.hprof"))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(sftp.Server.DataDir, &st); err != nil {
		t.Fatal(err)
	}
	for p := d; p != sftp.Server.DataDir && len(p) > len(sftp.Server.DataDir); p = filepath.Dir(p) {
		if err := os.Chown(p, int(st.Uid), int(st.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// countFinals counts the archived dumps (not manifests, not temporaries) in dirs.
func countFinals(dirs []string) int {
	n := 0
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if filepath.Ext(e.Name()) == ".hprof" {
				n++
			}
		}
	}
	return n
}

// startLab starts a bare lab (no keeplog of its own: the test runs bin/keeplog processes against its API server),
// stopped when the test ends.
func startLab(ctx context.Context, t *testing.T) *lab.Lab {
	t.Helper()
	l, err := lab.Start(ctx, lab.Config{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Stop(); err != nil {
			t.Error(err)
		}
	})
	return l
}
