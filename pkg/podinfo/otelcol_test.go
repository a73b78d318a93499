package podinfo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keeplog/keeplog/internal/otelcoltest"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// TestGraceCollectorReadsEachLineOnce runs the real OpenTelemetry Collector with the shipped snippet over a pod whose
// stdout file keeplog's grace has linked into <root>/.pods (two paths, one inode, in one filelog receiver), and the
// pod logs the way most pods do: a line, a pause in which the collector reads it, the next line, while the file is
// still shorter than the receiver's default fingerprint (1000 bytes). Then kubelet deletes its name. Every line must
// be exported exactly once, with the pod's attributes. (With the receiver's default fingerprint_size the collector
// remembers the file by its first bytes as they were at its last read, sees the other path with more first bytes at
// the next poll, takes it for a new file and reads it again from the start: this test then fails with every line
// but the last ones twice.)
func TestGraceCollectorReadsEachLineOnce(t *testing.T) {
	ctx := context.Background()
	e := newGraceEnv(t, t.TempDir())
	p := e.pod("printer", map[string]string{api.AnnotationStdoutGrace: "true"})
	c := otelcoltest.Start(t, readSnippet(t, "otelcol-filelog.yaml", e.root, e.source), []string{"filelog/keeplog-stdout"})
	const lines = 8
	for i := 1; i <= lines; i++ {
		e.write(p, "0.log", fmt.Sprintf("line %d", i))
		if i == 1 {
			e.g.Poll(ctx)
			k, g := filepath.Join(e.kubeletDir(p), "0.log"), filepath.Join(e.treeDir(p), "0.log")
			ki, _ := nlink(t, k)
			if gi, n := nlink(t, g); gi != ki || n != 2 {
				t.Fatalf("%s is not a link of %s (inode %d of %d, %d links)", g, k, gi, ki, n)
			}
		}
		waitBody(t, c, fmt.Sprintf("line %d", i))
	}
	if err := os.RemoveAll(filepath.Dir(e.kubeletDir(p))); err != nil {
		t.Fatal(err)
	}
	e.g.Poll(ctx)
	time.Sleep(2 * time.Second) // ten polls of the receiver: a second reading would be exported by now
	c.Stop()
	checkEachLineOnce(t, c, store.PodRef{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID)}, lines)
}

// checkEachLineOnce: the stopped collector exported "line 1" .. "line <lines>" exactly once each, every record with
// the pod's attributes and container app.
func checkEachLineOnce(t *testing.T, c *otelcoltest.Collector, pod store.PodRef, lines int) {
	t.Helper()
	recs, err := c.Records()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range recs {
		if r.Resource["k8s.pod.name"] != pod.Name || r.Resource["k8s.pod.uid"] != pod.UID ||
			r.Resource["k8s.namespace.name"] != pod.Namespace || r.Resource["k8s.container.name"] != "app" {
			t.Errorf("record %q has resource %v", r.Body, r.Resource)
		}
		seen[r.Body]++
	}
	for i := 1; i <= lines; i++ {
		if n := seen[fmt.Sprintf("line %d", i)]; n != 1 {
			t.Errorf("line %d exported %d times, want once", i, n)
		}
	}
	if len(recs) != lines {
		t.Errorf("%d records exported, want %d", len(recs), lines)
	}
}

// waitBody waits until the collector has exported a record with this body.
func waitBody(t *testing.T, c *otelcoltest.Collector, body string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		recs, err := c.Records()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Body == body {
				return
			}
		}
		if c.Exited() {
			t.Fatal("the collector exited")
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector did not export %q in 30s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCopyCollectorReadsEachLineOnce is the same for a pod with a keeplog volume: the LogCopier's copy, linked into
// <root>/.pods, is a second inode that starts with kubelet's bytes and lags behind them (copied every third line
// here). The collector must continue it, never read it from its start: every line exactly once.
func TestCopyCollectorReadsEachLineOnce(t *testing.T) {
	e := newLogEnv(t)
	c := otelcoltest.Start(t, readSnippet(t, "otelcol-filelog.yaml", filepath.Dir(e.podDir), e.source), []string{"filelog/keeplog-stdout"})
	const lines = 8
	for i := 1; i <= lines; i++ {
		e.appendSrc("0.log", fmt.Sprintf("line %d", i))
		if i%3 == 1 {
			e.copy()
		}
		waitBody(t, c, fmt.Sprintf("line %d", i))
	}
	e.copy() // the last copy, before kubelet deletes its files
	if err := os.RemoveAll(filepath.Dir(e.src)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // ten polls of the receiver: a second reading would be exported by now
	c.Stop()
	checkEachLineOnce(t, c, testRef, lines)
}
