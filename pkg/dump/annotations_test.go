package dump

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keeplog/keeplog/pkg/api"
)

func testPod(ann map[string]string, containers ...string) *corev1.Pod {
	if len(containers) == 0 {
		containers = []string{"app", "sidecar"}
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: testUID, Annotations: ann}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
	}
	return p
}

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ann   map[string]string
		ok    bool
		want  Spec
		warns []string // substrings, one per warning, in order
	}{
		{name: "not opted in", ann: map[string]string{"keeplog.csi.io/archive": "true"}},
		{name: "not opted in, typo reported", ann: map[string]string{"keeplog.csi.io/dump-prot": "8080"},
			warns: []string{"unknown annotation keeplog.csi.io/dump-prot"}},
		{name: "http defaults", ann: map[string]string{api.AnnotationDumpPort: "8080", api.AnnotationDumpPath: "/dump"}, ok: true,
			want: Spec{Method: MethodHTTP, Port: 8080, Path: "/dump", HTTPMethod: "POST", Container: "app", Threshold: 80, FirstOnly: true}},
		{name: "http all set", ann: map[string]string{api.AnnotationDumpPort: "9000", api.AnnotationDumpPath: "/actuator/dump?live=true",
			api.AnnotationDumpMethod: "get", api.AnnotationDumpContainer: "sidecar", api.AnnotationDumpThreshold: "90%", api.AnnotationDumpFirstOnly: "false",
			api.AnnotationDumpRequested: "r1", api.AnnotationDumpRearm: "a1"}, ok: true,
			want: Spec{Method: MethodHTTP, Port: 9000, Path: "/actuator/dump?live=true", HTTPMethod: "GET", Container: "sidecar",
				Threshold: 90, Requested: "r1", Rearm: "a1"}},
		{name: "exec defaults to the watched container", ann: map[string]string{api.AnnotationDumpExec: "jcmd 1 GC.heap_dump /logs/x.hprof",
			api.AnnotationDumpContainer: "sidecar"}, ok: true,
			want: Spec{Method: MethodExec, Command: "jcmd 1 GC.heap_dump /logs/x.hprof", ExecContainer: "sidecar", HTTPMethod: "POST",
				Container: "sidecar", Threshold: 80, FirstOnly: true}},
		{name: "exec in another container", ann: map[string]string{api.AnnotationDumpExec: "kill -3 1", api.AnnotationDumpExecContainer: "sidecar"}, ok: true,
			want: Spec{Method: MethodExec, Command: "kill -3 1", ExecContainer: "sidecar", HTTPMethod: "POST", Container: "app",
				Threshold: 80, FirstOnly: true}},
		{name: "malformed optional values fall back", ann: map[string]string{api.AnnotationDumpPort: "8080", api.AnnotationDumpPath: "/d",
			api.AnnotationDumpMethod: "PUT", api.AnnotationDumpThreshold: "0", api.AnnotationDumpFirstOnly: "yes please", api.AnnotationDumpExecContainer: "app"}, ok: true,
			want: Spec{Method: MethodHTTP, Port: 8080, Path: "/d", HTTPMethod: "POST", Container: "app", Threshold: 80, FirstOnly: true},
			warns: []string{`dump-method="PUT": must be GET or POST`, "dump-exec-container=\"app\": only used with", `dump-threshold="0": must be a whole percentage`,
				`dump-first-only="yes please": must be true or false`}},
		{name: "threshold above 100", ann: map[string]string{api.AnnotationDumpPort: "1", api.AnnotationDumpPath: "/", api.AnnotationDumpThreshold: "101"}, ok: true,
			want:  Spec{Method: MethodHTTP, Port: 1, Path: "/", HTTPMethod: "POST", Container: "app", Threshold: 80, FirstOnly: true},
			warns: []string{"dump-threshold=\"101\""}},
		{name: "both ways", ann: map[string]string{api.AnnotationDumpPort: "8080", api.AnnotationDumpPath: "/d", api.AnnotationDumpExec: "x"},
			warns: []string{"either keeplog.csi.io/dump-port (HTTP) or keeplog.csi.io/dump-exec"}},
		{name: "bad port", ann: map[string]string{api.AnnotationDumpPort: "http", api.AnnotationDumpPath: "/d"}, warns: []string{`dump-port="http": must be a port number`}},
		{name: "port 0", ann: map[string]string{api.AnnotationDumpPort: "0", api.AnnotationDumpPath: "/d"}, warns: []string{`dump-port="0"`}},
		{name: "no path", ann: map[string]string{api.AnnotationDumpPort: "8080"}, warns: []string{`dump-path="": required`}},
		{name: "relative path", ann: map[string]string{api.AnnotationDumpPort: "8080", api.AnnotationDumpPath: "dump"}, warns: []string{"must start with /"}},
		{name: "empty command", ann: map[string]string{api.AnnotationDumpExec: "  "}, warns: []string{"dump-exec=\"  \": must be a command"}},
		{name: "unknown container", ann: map[string]string{api.AnnotationDumpPort: "8080", api.AnnotationDumpPath: "/d", api.AnnotationDumpContainer: "java"},
			warns: []string{`dump-container="java": no such container (the pod has app, sidecar)`}},
		{name: "unknown exec container", ann: map[string]string{api.AnnotationDumpExec: "x", api.AnnotationDumpExecContainer: "java"},
			warns: []string{`dump-exec-container="java": no such container`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, warns, ok := ParseSpec(testPod(tc.ann))
			if ok != tc.ok || got != tc.want {
				t.Fatalf("ParseSpec = %+v, %v; want %+v, %v (warnings %v)", got, ok, tc.want, tc.ok, warns)
			}
			if len(warns) != len(tc.warns) {
				t.Fatalf("warnings %v, want %d like %q", warns, len(tc.warns), tc.warns)
			}
			for i, w := range warns {
				if !strings.Contains(w.Error(), tc.warns[i]) {
					t.Errorf("warning %d: %q does not contain %q", i, w, tc.warns[i])
				}
			}
		})
	}
}

func TestContainerID(t *testing.T) {
	p := testPod(nil)
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{
		{Name: "sidecar", ContainerID: "containerd://abc123", State: running},
		{Name: "app", ContainerID: "containerd://" + testCID, State: running},
	}
	if got := ContainerID(p, "app"); got != testCID {
		t.Fatalf("ContainerID(app) = %q", got)
	}
	p.Status.ContainerStatuses[1].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{}}
	if got := ContainerID(p, "app"); got != "" {
		t.Fatalf("a waiting container has no ID to watch, got %q", got)
	}
	p.Status.ContainerStatuses[0].ContainerID = "containerd://../../x"
	if got := ContainerID(p, "sidecar"); got != "" {
		t.Fatalf("an ID with a path was accepted: %q", got)
	}
}
