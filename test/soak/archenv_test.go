//go:build soak

package soak

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keeplog/keeplog/test/binary"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

// archEnv is one bin/keeplog archiving to one OpenSSH sshd, with no API server: the archive policy comes from the
// volume's attributes (a CSI inline volume's volumeAttributes are stored in its volume record, as CreateVolume's
// StorageClass parameters are), which is what the archiver reads when it cannot see the pod's annotations.
type archEnv struct {
	t    testing.TB
	work string
	sftp *framework.SFTP
	// secret is the target Secret's directory when a test rewrites it (newS3ArchEnv, the SFTP rotation test);
	// empty for newArchEnv.
	secret string
	kl     *binary.Keeplog
	csi    *binary.CSI
}

// newArchEnv starts sshd and keeplog with args; cleanups stop both by PID and unmount what a failed test left.
func newArchEnv(t testing.TB, ctx context.Context, args ...string) *archEnv {
	e := &archEnv{t: t, work: t.TempDir()}
	e.sftp = framework.StartSFTP(t)
	e.start(ctx, e.sftp.TargetDir, args)
	return e
}

// start starts keeplog archiving to target with args and dials its CSI socket; cleanups stop it by PID and unmount
// what a failed test left.
func (e *archEnv) start(ctx context.Context, target string, args []string) {
	e.t.Cleanup(func() { unmountUnder(e.t, e.work) })
	kl, err := binary.StartKeeplog(ctx, binary.Config{WorkDir: filepath.Join(e.work, "keeplog"), ArchiveTarget: target, Args: args})
	if err != nil {
		e.t.Fatal(err)
	}
	e.kl = kl
	e.t.Cleanup(func() { _ = kl.Stop() })
	if e.csi, err = binary.DialCSI(kl.Socket); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { e.csi.Close() })
}

// podWithDumps publishes an inline volume with attrs for a new pod, copies each source file into it (the name is
// dumpName(i)), and unpublishes it, which tells the archiver the files are finished. It returns the pod.
func (e *archEnv) podWithDumps(ctx context.Context, name string, attrs map[string]string, sources []string) binary.Pod {
	e.t.Helper()
	pod := binary.NewPod("heap", name)
	vol := binary.EphemeralVolumeID(pod, "logs")
	target := filepath.Join(e.work, "targets", pod.UID, "mount")
	if err := e.csi.Publish(ctx, vol, target, pod, true, attrs); err != nil {
		e.t.Fatal(err)
	}
	for i, src := range sources {
		if err := copyFile(src, filepath.Join(target, dumpName(i))); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := binary.Retry(ctx, time.Minute, func(ctx context.Context) error { return e.csi.Unpublish(ctx, vol, target) }); err != nil {
		e.t.Fatal(err)
	}
	return pod
}

// dumpName is where the i-th dump of a pod goes: inside the container directory "app", as a JVM with
// -XX:HeapDumpPath=/logs/app/ names them.
func dumpName(i int) string { return fmt.Sprintf("app/java_pid%d.hprof", 100+i) }

// copyFile writes src's bytes to dst the way a JVM writes a dump (create, write, close); dst's directory is made.
func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// waitArchived waits until the server holds n archived files (manifest and data) and no upload temporary, and
// returns the inventory.
func (e *archEnv) waitArchived(ctx context.Context, n int, timeout time.Duration) binary.Inventory {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		inv, err := binary.ReadInventory(e.sftp.Server.DataDir)
		if err == nil && complete(inv) == n && len(inv.Temps) == 0 {
			return inv
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			e.t.Fatalf("the server holds %d of %d archived files and %d upload temporaries after %s (err %v); "+
				"keeplog's log:\n%s", complete(inv), n, len(inv.Temps), timeout, err, e.kl.LogTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// complete counts the files whose data file is there beside the manifest.
func complete(inv binary.Inventory) int {
	n := 0
	for _, f := range inv.Files {
		if !f.Missing {
			n++
		}
	}
	return n
}
