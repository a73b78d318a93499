//go:build soak

package soak

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keeplog/keeplog/test/binary"
)

// scaleRootVersion names the cache layout: bump it when what a retained pod directory holds changes, so that an old
// cache is not measured as if it were the new one.
const scaleRootVersion = "v1"

// scaleCacheDir is where the retained roots are kept between runs: $KEEPLOG_CACHE (make exports it,
// ~/.cache/keeplog), else /var/tmp; never in the repository.
func scaleCacheDir() string {
	base := os.Getenv("KEEPLOG_CACHE")
	if base == "" {
		base = "/var/tmp/keeplog-cache"
	}
	return filepath.Join(base, "scale-root-"+scaleRootVersion)
}

// retainedRoot returns a keeplog root holding size retained pod directories made through CSI, building it once per
// size: making 20,000 through CSI takes minutes, and the runs only read it (each run measures a copy).
func retainedRoot(b *testing.B, size int) string {
	dir := filepath.Join(scaleCacheDir(), strconv.Itoa(size))
	root := filepath.Join(dir, "build", "root")
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return root
	}
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := buildRetainedRoot(b, filepath.Join(dir, "build"), size); err != nil {
		b.Fatalf("build the root of %d retained directories: %v", size, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "complete"), []byte(time.Now().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("made %d retained pod directories through CSI in %s (cached in %s)", size, time.Since(start).Round(time.Second), dir)
	return root
}

// buildRetainedRoot starts keeplog on work and makes size pods' directories as kubelet and csi-provisioner would:
// CreateVolume, NodePublishVolume with the pod's information, a few files written through the mount,
// NodeUnpublishVolume. Workers run in parallel; keeplog is stopped by its PID at the end.
func buildRetainedRoot(b *testing.B, work string, size int) error {
	ctx := context.Background()
	kl, err := binary.StartKeeplog(ctx, binary.Config{WorkDir: work, Args: []string{"--retain-for=720h"}})
	if err != nil {
		return err
	}
	defer func() { _ = kl.Stop(); unmountUnder(b, work) }()
	c, err := binary.DialCSI(kl.Socket)
	if err != nil {
		return err
	}
	defer c.Close()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < size; i = int(next.Add(1)) - 1 {
				if err := retainedPod(ctx, c, work, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when the channel is empty
}

// retainedPod is one pod's life: its volume created, published with pod information, written, unpublished.
func retainedPod(ctx context.Context, c *binary.CSI, work string, i int) error {
	pod := binary.NewPod("cron", fmt.Sprintf("job-%d", i))
	vol, err := c.CreateVolume(ctx, "pvc-"+pod.UID, nil)
	if err != nil {
		return err
	}
	target := filepath.Join(work, "targets", pod.UID, "mount")
	if err := c.Publish(ctx, vol, target, pod, false, nil); err != nil {
		return err
	}
	werr := writeAppFiles(target, i)
	if err := c.Unpublish(ctx, vol, target); err != nil {
		return errors.Join(werr, err)
	}
	return errors.Join(werr, os.RemoveAll(filepath.Join(work, "targets", pod.UID)))
}

// writeAppFiles writes what a small Java job leaves: a GC log and an access log in its container's directory, and
// a sidecar's output.
func writeAppFiles(target string, seed int) error {
	for _, f := range []struct {
		rel  string
		size int64
	}{{"app/gc.log", 4 << 10}, {"app/access.log", 16 << 10}, {"sidecar/out.log", 1 << 10}} {
		if _, err := binary.WriteFile(filepath.Join(target, f.rel), f.size, uint64(seed)); err != nil {
			return err
		}
	}
	return nil
}

// copyRoot copies a cached root to dst (cp -a: modes, owners and times kept), so that a run changes only its copy.
func copyRoot(b *testing.B, src, dst string) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		b.Fatalf("cp -a %s %s: %v: %s", src, dst, err, out)
	}
}
