package lab

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// MachineLockPath is the lock file that makes labs on one machine take turns: a lab uses fixed
// host paths (/var/lib/kubelet, /run/containerd, kernel settings), so two at once would break
// each other. The lock is an flock, released by the kernel if the holder dies.
const MachineLockPath = "/run/keeplog-lab.lock"

// lockMachine blocks until this process holds the machine's lab lock or ctx ends.
func lockMachine(ctx context.Context, logf func(string, ...any)) (*os.File, error) {
	f, err := os.OpenFile(MachineLockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lab lock %s: %w", MachineLockPath, err)
	}
	waiting := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if err != unix.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", MachineLockPath, err)
		}
		if !waiting {
			logf("another lab runs on this machine (lock %s held); waiting for it to stop", MachineLockPath)
			waiting = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lab lock %s: %w", MachineLockPath, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
