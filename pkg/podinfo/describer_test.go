package podinfo

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// A container that ends is copied at once, not at the next Interval (an hour here): kubelet keeps only the last
// ended instance's log, so a container restarting faster than the Interval would lose logs otherwise.
func TestDescriberCopiesLogsWhenAContainerEnds(t *testing.T) {
	e := newLogEnv(t)
	d, err := NewDescriber(DescriberConfig{Node: "node-a", LogSourceRoot: e.source, Interval: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() { d.Run(ctx); close(done) }()

	d.Published(ctx, Use{PodDir: e.podDir, Pod: PodContext{Pod: testRef}})
	pod := testPod()
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	d.ContainersChanged(pod)
	if n := urgentCount(d); n != 0 {
		t.Fatalf("%d pods queued for a copy while every container runs", n)
	}

	e.appendSrc("0.log", "first instance", "its last words")
	crashed := pod.DeepCopy()
	crashed.Status.ContainerStatuses[0].RestartCount = 1
	crashed.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1}
	d.ContainersChanged(crashed)
	waitCopied(t, e, "0.log")

	// The same status again (a resync) queues nothing; another pod with the same name but another UID is not ours.
	d.ContainersChanged(crashed)
	other := crashed.DeepCopy()
	other.UID = types.UID("11111111-2222-3333-4444-555555555555")
	other.Status.ContainerStatuses[0].RestartCount = 5
	d.ContainersChanged(other)
	if n := urgentCount(d); n != 0 {
		t.Fatalf("%d pods queued for a copy without a container ending", n)
	}

	// The second instance terminates: copied again.
	e.appendSrc("1.log", "second instance")
	ended := crashed.DeepCopy()
	ended.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}
	d.ContainersChanged(ended)
	waitCopied(t, e, "1.log")

	// After unpublish the pod is forgotten: nothing is queued for it.
	d.Unpublished(ctx, Use{PodDir: e.podDir, Pod: PodContext{Pod: testRef}})
	again := ended.DeepCopy()
	again.Status.ContainerStatuses[0].RestartCount = 2
	d.ContainersChanged(again)
	if n := urgentCount(d); n != 0 {
		t.Fatalf("%d pods queued for a copy after unpublish", n)
	}
}

func urgentCount(d *Describer) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.urgent)
}

func waitCopied(t *testing.T, e *logEnv, name string) {
	t.Helper()
	want := readFile(t, filepath.Join(e.src, name))
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := os.ReadFile(filepath.Join(e.dst, name))
		if err == nil && string(got) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not copied after the container ended: %q, %v", name, got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
