package framework

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/internal/otelcoltest"
	"github.com/keeplog/keeplog/test/e2e/lab"
)

// OtelcolBin is the collector binary: $KEEPLOG_OTELCOL, else hack/build-otelcol.sh's cache.
func OtelcolBin() string { return otelcoltest.Binary() }

// SnippetRoot and SnippetPodLogs are the paths the shipped collector snippets are written for (keeplog's default
// --root and kubelet's /var/log/pods); the tests replace them with the lab's.
const (
	SnippetRoot    = "/var/log/keeplog"
	SnippetPodLogs = "/var/log/pods"
)

// Collector is a real OpenTelemetry Collector reading the node with a shipped snippet and writing every record it
// ingests to a file (the file exporter, OTLP JSON).
type Collector struct {
	proc *lab.Process
	out  string
}

// StartCollector runs the collector with the snippet at path (paths rewritten to the lab's root and pod logs
// directory) merged with a file exporter and a pipeline of the given receivers. Its own telemetry is off, so it
// listens on nothing.
func (e *Env) StartCollector(name, snippet string, receivers []string) (*Collector, error) {
	bin := OtelcolBin()
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("collector binary %s missing (run hack/build-otelcol.sh or make otelcol): %w", bin, err)
	}
	dir := filepath.Join(e.base, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(snippet)
	if err != nil {
		return nil, err
	}
	cfg := strings.NewReplacer(SnippetRoot, e.Root, SnippetPodLogs, e.PodLogsDir()).Replace(string(data))
	out := filepath.Join(dir, "records.json")
	pipeline := otelcoltest.Pipeline(out, receivers)
	snippetCfg, pipelineCfg := filepath.Join(dir, "snippet.yaml"), filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(snippetCfg, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(pipelineCfg, []byte(pipeline), 0o644); err != nil {
		return nil, err
	}
	p, err := e.Lab.StartProcess(name, []string{bin, "--config=" + snippetCfg, "--config=" + pipelineCfg}, nil)
	if err != nil {
		return nil, err
	}
	return &Collector{proc: p, out: out}, nil
}

// Stop ends the collector (SIGTERM: the exporter flushes) by its PID.
func (c *Collector) Stop() error { return c.proc.Stop(30 * time.Second) }

// Log is the end of the collector's own log, for failure messages.
func (c *Collector) Log(n int) string { return c.proc.LogTail(n) }

// Record is one ingested log record.
type Record = otelcoltest.Record

// Records reads every record the collector has exported so far.
func (c *Collector) Records() ([]Record, error) { return otelcoltest.ReadRecords(c.out) }

// WaitRecords waits until the collector has exported at least want records and then nothing new for settle (so
// that duplicates arriving late are seen too), or timeout; it returns what it read last.
func (c *Collector) WaitRecords(ctx context.Context, want int, settle, timeout time.Duration) ([]Record, error) {
	var recs []Record
	last, since := -1, time.Now()
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		var err error
		if recs, err = c.Records(); err != nil {
			return false, err
		}
		if len(recs) != last {
			last, since = len(recs), time.Now()
		}
		return len(recs) >= want && time.Since(since) >= settle, nil
	})
	return recs, err
}
