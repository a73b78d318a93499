package podinfo

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/keeplog/keeplog/pkg/api"
)

func mt(minute int) metav1.Time {
	return metav1.Time{Time: time.Date(2030, 1, 2, 3, minute, 0, 0, time.UTC)}
}

func TestEndState(t *testing.T) {
	unpublished := time.Date(2030, 1, 2, 4, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		status    corev1.ContainerStatus // of container "app"
		wantState string
		wantText  []string
		check     func(t *testing.T, c ContainerEnd)
	}{
		{
			name: "OOMKilled",
			status: corev1.ContainerStatus{Name: "app", RestartCount: 3, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 137, Reason: "OOMKilled", StartedAt: mt(10), FinishedAt: mt(12), ContainerID: "containerd://abc"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled", StartedAt: mt(5), FinishedAt: mt(9)}}},
			wantState: "terminated",
			wantText: []string{"  app (regular): terminated, exit code 137, reason OOMKilled, started 2030-01-02T03:10:00Z, finished 2030-01-02T03:12:00Z, restarts 3\n",
				"      previous run: exit code 137, reason OOMKilled, started 2030-01-02T03:05:00Z, finished 2030-01-02T03:09:00Z\n"},
			check: func(t *testing.T, c ContainerEnd) {
				if c.Terminated == nil || c.Terminated.ExitCode != 137 || c.Terminated.Reason != "OOMKilled" || c.RestartCount != 3 ||
					c.LastTermination == nil || c.LastTermination.ExitCode != 137 || !c.Terminated.FinishedAt.Equal(mt(12).Time) {
					t.Errorf("container = %+v", c)
				}
			},
		},
		{
			name: "Error with a signal",
			status: corev1.ContainerStatus{Name: "app", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 143, Signal: 15, Reason: "Error", Message: "bye"}}},
			wantState: "terminated",
			wantText:  []string{"  app (regular): terminated, exit code 143, reason Error, signal 15, message \"bye\", restarts 0\n"},
			check: func(t *testing.T, c ContainerEnd) {
				if c.Terminated.ExitCode != 143 || c.Terminated.Signal != 15 || c.Terminated.Message != "bye" || c.LastTermination != nil {
					t.Errorf("container = %+v", c)
				}
			},
		},
		{
			name:      "Completed",
			status:    corev1.ContainerStatus{Name: "app", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}},
			wantState: "terminated",
			wantText:  []string{"  app (regular): terminated, exit code 0, reason Completed, restarts 0\n"},
		},
		{
			name: "CrashLoopBackOff after exit 1",
			status: corev1.ContainerStatus{Name: "app", RestartCount: 5, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}},
			wantState: "waiting",
			wantText:  []string{"  app (regular): waiting, reason CrashLoopBackOff, restarts 5\n      previous run: exit code 1, reason Error\n"},
		},
		{
			name:      "still running",
			status:    corev1.ContainerStatus{Name: "app", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: mt(1)}}},
			wantState: "running",
			wantText:  []string{"  app (regular): running, since 2030-01-02T03:01:00Z, restarts 0\n"},
		},
		{
			name:      "no status for the container",
			status:    corev1.ContainerStatus{Name: "not-app"},
			wantState: "unknown",
			wantText:  []string{"  app (regular): unknown, restarts 0\n"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireRoot(t)
			pod := testPod()
			pod.DeletionTimestamp = &metav1.Time{Time: unpublished.Add(-time.Minute)}
			pod.Status.Phase = corev1.PodFailed
			pod.Status.ContainerStatuses = []corev1.ContainerStatus{tc.status}
			pod.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "migrate", State: corev1.ContainerState{
				Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}}}
			podDir := newPodDir(t, testRef)
			w := NewWriter(Options{Clock: clocktesting.NewFakePassiveClock(fixedNow)})
			if err := w.WriteEndState(podDir, pod, unpublished); err != nil {
				t.Fatal(err)
			}
			var es EndState
			data := readFile(t, filepath.Join(podDir, api.KeeplogDir, api.StatusYAMLFile))
			if err := yaml.Unmarshal([]byte(data), &es); err != nil {
				t.Fatalf("status.yaml: %v\n%s", err, data)
			}
			if es.Kind != api.EndStateKind || es.Pod != testRef || !es.UnpublishedAt.Equal(unpublished) || es.Phase != "Failed" || es.DeletionTimestamp == nil {
				t.Errorf("end state header = %+v", es)
			}
			if len(es.Containers) != 4 {
				t.Fatalf("containers = %+v, want migrate, app, sidecar, debugger", es.Containers)
			}
			if c := es.Containers[0]; c.Name != "migrate" || c.Type != "init" || c.Terminated == nil || c.Terminated.Reason != "Completed" {
				t.Errorf("init container = %+v", c)
			}
			app := es.Containers[1]
			if app.Name != "app" || app.Type != "regular" || app.State != tc.wantState || app.Image != "registry.example/web:3.4" {
				t.Errorf("app = %+v, want state %s", app, tc.wantState)
			}
			if tc.check != nil {
				tc.check(t, app)
			}
			if es.Containers[3].Type != "ephemeral" {
				t.Errorf("ephemeral container = %+v", es.Containers[3])
			}
			text := readFile(t, filepath.Join(podDir, api.KeeplogDir, api.EndedTextFile))
			for _, want := range append(tc.wantText, "Unpublished:      2030-01-02T04:00:00Z\n", "Phase:            Failed\n",
				"  migrate (init): terminated, exit code 0, reason Completed, restarts 0\n") {
				if !strings.Contains(text, want) {
					t.Errorf("ended.txt lacks %q:\n%s", want, text)
				}
			}
		})
	}
}

func TestEndStateUnavailableDoesNotReplaceAKnownEnd(t *testing.T) {
	requireRoot(t)
	podDir := newPodDir(t, testRef)
	w := NewWriter(Options{Clock: clocktesting.NewFakePassiveClock(fixedNow)})
	if err := w.WriteEndStateUnavailable(podDir, testRef, fixedNow, errors.New("pod not found")); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(podDir, api.KeeplogDir, api.EndedTextFile)
	if got := readFile(t, text); !strings.Contains(got, "Pod object:       not available: pod not found") {
		t.Errorf("ended.txt:\n%s", got)
	}
	pod := testPod()
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error"}}}}
	if err := w.WriteEndState(podDir, pod, fixedNow); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteEndStateUnavailable(podDir, testRef, fixedNow.Add(time.Minute), errors.New("timeout")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, text); !strings.Contains(got, "exit code 2, reason Error") || strings.Contains(got, "not available") {
		t.Errorf("a known end was replaced:\n%s", got)
	}
}

// deletionTimestamp is the deadline of a pod's deletion (the request plus the grace period), not when the pod went:
// ended.txt names it so and says when the deletion was asked for.
func TestEndedTextNamesTheDeletionDeadline(t *testing.T) {
	unpublished := time.Date(2030, 1, 2, 4, 0, 0, 0, time.UTC)
	pod := testPod()
	pod.DeletionTimestamp = &metav1.Time{Time: unpublished.Add(25 * time.Second)} // asked at 03:59:55 with 30 s grace
	grace := int64(30)
	pod.DeletionGracePeriodSeconds = &grace
	es := EndStateOf(pod, unpublished)
	if es.DeletionGracePeriodSeconds == nil || *es.DeletionGracePeriodSeconds != 30 {
		t.Errorf("deletionGracePeriodSeconds = %v, want 30", es.DeletionGracePeriodSeconds)
	}
	text := EndedText(es)
	for _, want := range []string{"Delete requested: 2030-01-02T03:59:55Z\n", "Delete deadline:  2030-01-02T04:00:25Z (grace 30s)\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("ended.txt lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "Deleted:") {
		t.Errorf("ended.txt calls the deletion deadline \"Deleted\":\n%s", text)
	}

	pod.DeletionGracePeriodSeconds = nil // no grace period known: only the deadline, named as such
	text = EndedText(EndStateOf(pod, unpublished))
	if !strings.Contains(text, "Delete deadline:  2030-01-02T04:00:25Z\n") || strings.Contains(text, "Delete requested") {
		t.Errorf("ended.txt without a grace period:\n%s", text)
	}
}
