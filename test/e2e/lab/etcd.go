package lab

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// startEtcd runs Debian's etcd on 127.0.0.1 with a data dir under the WorkDir and waits for /health.
func (l *Lab) startEtcd(ctx context.Context) error {
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		return fmt.Errorf("etcd not found on PATH (install etcd-server; hack/install-deps.sh): %w", err)
	}
	dataDir := filepath.Join(l.workDir, "etcd")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create etcd data dir %s: %w", dataDir, err)
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", l.ports.etcdClient)
	peer := fmt.Sprintf("http://127.0.0.1:%d", l.ports.etcdPeer)
	argv := []string{etcd,
		"--name=lab",
		"--data-dir=" + dataDir,
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=lab=" + peer,
		"--initial-cluster-state=new",
		"--initial-cluster-token=keeplog-lab",
		"--logger=zap",
		"--log-level=warn",
		"--snapshot-count=10000",
		"--quota-backend-bytes=2147483648",
	}
	p, err := l.startComponent("etcd", argv, nil)
	if err != nil {
		return err
	}
	l.etcdURL = client
	hc := &http.Client{Timeout: 2 * time.Second}
	return l.waitFor(ctx, p, "etcd /health on "+client, time.Minute, func(ctx context.Context) error {
		body, err := getOK(ctx, hc, client+"/health", "")
		if err == nil && !strings.Contains(body, `"true"`) {
			err = fmt.Errorf("etcd not healthy: %s", body)
		}
		return err
	})
}

// waitFor polls check every 200ms until it succeeds, timeout passes, ctx ends, or p (if not
// nil) exits; errors name what was awaited, the last check error, and the tail of p's log.
func (l *Lab) waitFor(ctx context.Context, p *Process, what string, timeout time.Duration, check func(context.Context) error) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			l.logf("%s: ready after %s", what, time.Since(start).Round(10*time.Millisecond))
			return nil
		}
		var exited <-chan struct{}
		if p != nil {
			exited = p.Done()
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("waiting for %s: %v (last check: %v)", what, ctx.Err(), last)
			if p != nil {
				msg += fmt.Sprintf("\n--- tail of %s ---\n%s", p.LogPath(), p.LogTail(30))
			}
			return fmt.Errorf("%s", msg)
		case <-exited:
			return fmt.Errorf("waiting for %s: %s (pid %d) exited: %v (last check: %v)\n--- tail of %s ---\n%s",
				what, p.Name(), p.Pid(), p.Wait(), last, p.LogPath(), p.LogTail(30))
		case <-tick.C:
		}
	}
}
