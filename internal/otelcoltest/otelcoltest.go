package otelcoltest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Version is the collector release hack/build-otelcol.sh builds (contrib modules; the core modules are at the
// matching v0.165.0 / v1.71.0).
const Version = "v0.165.1"

// Binary is the collector binary: $KEEPLOG_OTELCOL, else hack/build-otelcol.sh's cache.
func Binary() string {
	if b := os.Getenv("KEEPLOG_OTELCOL"); b != "" {
		return b
	}
	dir := os.Getenv("KEEPLOG_CACHE")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			home = "/root"
		}
		dir = filepath.Join(home, ".cache", "keeplog")
	}
	return filepath.Join(dir, "bin", "otelcol-"+Version, "otelcol")
}

// Pipeline is the config merged after a snippet: a file exporter writing every record to out (OTLP JSON, one line
// per flush) and a logs pipeline of the given receivers.
func Pipeline(out string, receivers []string) string {
	return fmt.Sprintf(`exporters:
  file/test:
    path: %s
    flush_interval: 200ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [%s]
      exporters: [file/test]
`, out, strings.Join(receivers, ", "))
}

// Collector is one running collector process.
type Collector struct {
	t    *testing.T
	out  string
	log  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs the collector with the config snippet (a file's text) merged with Pipeline of receivers, in a
// directory of its own below t.TempDir().
func Start(t *testing.T, snippet string, receivers []string) *Collector {
	t.Helper()
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("otelcoltest: collector binary %s missing (make otelcol, or hack/build-otelcol.sh): %v", bin, err)
	}
	dir := t.TempDir()
	c := &Collector{t: t, out: filepath.Join(dir, "records.json"), log: filepath.Join(dir, "otelcol.log")}
	snippetCfg, pipelineCfg := filepath.Join(dir, "snippet.yaml"), filepath.Join(dir, "pipeline.yaml")
	for p, s := range map[string]string{snippetCfg: snippet, pipelineCfg: Pipeline(c.out, receivers)} {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatalf("otelcoltest: %v", err)
		}
	}
	log, err := os.Create(c.log)
	if err != nil {
		t.Fatalf("otelcoltest: %v", err)
	}
	defer log.Close()
	cmd := exec.Command(bin, "--config="+snippetCfg, "--config="+pipelineCfg)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("otelcoltest: start %s: %v", bin, err)
	}
	c.cmd, c.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(c.done)
	t.Cleanup(func() {
		c.Stop()
		c.logTailIfFailed()
	})
	return c
}

// Stop ends the collector by its PID (SIGTERM, so the exporter flushes; SIGKILL after 30s) and waits for it.
func (c *Collector) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	c.cmd = nil
}

// Exited is true when the process ended by itself (a config it refused, a crash).
func (c *Collector) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Records reads every record the collector has exported so far.
func (c *Collector) Records() ([]Record, error) { return ReadRecords(c.out) }

func (c *Collector) logTailIfFailed() {
	if !c.t.Failed() {
		return
	}
	b, err := os.ReadFile(c.log)
	if err != nil {
		c.t.Logf("otelcoltest: %v", err)
		return
	}
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	c.t.Logf("otelcoltest: the end of the collector's log (%s):\n%s", c.log, b)
}
