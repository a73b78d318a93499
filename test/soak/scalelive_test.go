//go:build soak

package soak

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keeplog/keeplog/test/binary"
)

// livePods are the running pods of a scale run: published volumes whose applications append to a log every second.
type livePods struct {
	c       *binary.CSI
	work    string
	vols    []string
	targets []string
	stop    chan struct{}
	wg      sync.WaitGroup
	// paused stops the writers for the second half of the idle window: an idle node plugin with nothing written.
	paused atomic.Bool
}

// startLivePods publishes n volumes (CreateVolume, NodePublishVolume with pod information) and starts a writer in
// each: one line appended to app/app.log every second, the file opened and closed each time as a logger that
// rotates would.
func startLivePods(b *testing.B, ctx context.Context, c *binary.CSI, work string, n int) *livePods {
	lp := &livePods{c: c, work: work, stop: make(chan struct{})}
	for i := range n {
		pod := binary.NewPod("live", fmt.Sprintf("web-%d", i))
		vol, err := c.CreateVolume(ctx, "pvc-"+pod.UID, nil)
		if err != nil {
			b.Fatal(err)
		}
		target := filepath.Join(work, "targets", pod.UID, "mount")
		if err := c.Publish(ctx, vol, target, pod, false, nil); err != nil {
			b.Fatal(err)
		}
		lp.vols, lp.targets = append(lp.vols, vol), append(lp.targets, target)
		if err := os.MkdirAll(filepath.Join(target, "app"), 0o755); err != nil {
			b.Fatal(err)
		}
		lp.wg.Add(1)
		go lp.write(filepath.Join(target, "app", "app.log"))
	}
	return lp
}

func (lp *livePods) write(p string) {
	defer lp.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	line := []byte(time.Now().Format(time.RFC3339Nano) + " INFO request served in 3 ms\n")
	for {
		select {
		case <-lp.stop:
			return
		case <-tick.C:
		}
		if lp.paused.Load() {
			continue
		}
		f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			continue // blocked by a limit, or keeplog restarting: a logger drops the line
		}
		_, _ = f.Write(line)
		f.Close()
	}
}

// end stops the writers and unpublishes every volume, as kubelet does when the pods are deleted.
func (lp *livePods) end(b *testing.B, ctx context.Context) {
	close(lp.stop)
	lp.wg.Wait()
	for i, vol := range lp.vols {
		if err := binary.Retry(ctx, time.Minute, func(ctx context.Context) error { return lp.c.Unpublish(ctx, vol, lp.targets[i]) }); err != nil {
			b.Error(err)
		}
	}
}
