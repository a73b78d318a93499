package framework

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/test/e2e/lab"
)

// OtelcolVersion is the OpenTelemetry Collector release hack/build-otelcol.sh builds (contrib modules; the core
// modules are at the matching v0.165.0 / v1.71.0).
const OtelcolVersion = "v0.165.1"

// OtelcolBin is the collector binary: $KEEPLOG_OTELCOL, else hack/build-otelcol.sh's cache.
func OtelcolBin() string {
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
	return filepath.Join(dir, "bin", "otelcol-"+OtelcolVersion, "otelcol")
}

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
	pipeline := fmt.Sprintf(`exporters:
  file/e2e:
    path: %s
    flush_interval: 200ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [%s]
      exporters: [file/e2e]
`, out, strings.Join(receivers, ", "))
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
type Record struct {
	Body     string
	Resource map[string]string
	Attrs    map[string]string
}

type otlpKV struct {
	Key   string `json:"key"`
	Value struct {
		StringValue string `json:"stringValue"`
	} `json:"value"`
}

type otlpLogs struct {
	ResourceLogs []struct {
		Resource struct {
			Attributes []otlpKV `json:"attributes"`
		} `json:"resource"`
		ScopeLogs []struct {
			LogRecords []struct {
				Body struct {
					StringValue string `json:"stringValue"`
				} `json:"body"`
				Attributes []otlpKV `json:"attributes"`
			} `json:"logRecords"`
		} `json:"scopeLogs"`
	} `json:"resourceLogs"`
}

func kvMap(kvs []otlpKV) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.StringValue
	}
	return m
}

// Records reads every record the collector has exported so far.
func (c *Collector) Records() ([]Record, error) {
	f, err := os.Open(c.out)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	for sc.Scan() {
		var l otlpLogs
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			continue // a line being written
		}
		for _, rl := range l.ResourceLogs {
			res := kvMap(rl.Resource.Attributes)
			for _, sl := range rl.ScopeLogs {
				for _, r := range sl.LogRecords {
					out = append(out, Record{Body: r.Body.StringValue, Resource: res, Attrs: kvMap(r.Attributes)})
				}
			}
		}
	}
	return out, sc.Err()
}

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
