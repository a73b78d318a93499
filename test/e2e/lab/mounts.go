package lab

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/keeplog/keeplog/internal/fstest"
)

// MountsUnder returns the mount points at or below dir, in /proc/self/mountinfo order
// (a mount stacked on another comes after it).
func MountsUnder(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := fstest.UnescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return out, nil
}

// unmountAll unmounts every mount at or below dir, newest first, lazily when a mount is busy.
func unmountAll(dir string) error {
	for round := 0; round < 20; round++ {
		mps, err := MountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mps) == 0 {
			return nil
		}
		var errs []error
		for i := len(mps) - 1; i >= 0; i-- {
			mp := mps[i]
			if err := syscall.Unmount(mp, 0); err != nil {
				if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOENT) {
					continue // already gone (a parent was unmounted first)
				}
				if err2 := syscall.Unmount(mp, syscall.MNT_DETACH); err2 != nil && !errors.Is(err2, syscall.EINVAL) {
					errs = append(errs, fmt.Errorf("unmount %s: %v (lazy: %v)", mp, err, err2))
				}
			}
		}
		if round == 19 && len(errs) > 0 {
			return errors.Join(errs...)
		}
	}
	mps, err := MountsUnder(dir)
	if err != nil {
		return err
	}
	if len(mps) > 0 {
		return fmt.Errorf("still mounted under %s after unmounting: %s", dir, strings.Join(mps, ", "))
	}
	return nil
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free when checked. They are
// picked below the kernel's ephemeral range (32768+ by default), so outgoing connections do not
// grab them between the check and the daemon's bind, and away from the well-known Kubernetes and
// etcd defaults, so a lab never collides with a real cluster's daemons.
func freePorts(n int) ([]int, error) {
	const lo, hi = 20000, 32000
	seen := map[int]bool{}
	var ports []int
	for attempts := 0; len(ports) < n; attempts++ {
		if attempts > 200*n {
			return nil, fmt.Errorf("could not find %d free ports on 127.0.0.1 in [%d,%d)", n, lo, hi)
		}
		port := lo + rand.IntN(hi-lo)
		if seen[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		seen[port] = true
		ports = append(ports, port)
	}
	return ports, nil
}
