package podinfo

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keeplog/keeplog/pkg/store"
)

var testRef = store.PodRef{Namespace: "shop", Name: "web-7d9f8-abcde", UID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}

var fixedNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// newPodDir makes <tmp>/root/<ns>_<pod>_<uid> mode 0777, as pkg/store does.
func newPodDir(t *testing.T, ref store.PodRef) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	dir := filepath.Join(root, ref.DirName())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown and ownership checks")
	}
}

func quantities(kv ...string) corev1.ResourceList {
	rl := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		rl[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return rl
}

// testPod is a Deployment's pod with an init container, two containers, env values and valueFrom references.
func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: testRef.Namespace, Name: testRef.Name, UID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
			Labels:          map[string]string{"app": "web", "pod-template-hash": "7d9f8"},
			Annotations:     map[string]string{LastAppliedAnnotation: `{"env":[{"name":"DB_PASSWORD","value":"hunter2"}]}`, "team": "payments"},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: "Update"}},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8", UID: "rs-uid", Controller: ptr(true)}},
		},
		Spec: corev1.PodSpec{
			NodeName:           "node-1",
			ServiceAccountName: "web-sa",
			InitContainers: []corev1.Container{{
				Name: "migrate", Image: "registry.example/migrate:1.2",
				Env: []corev1.EnvVar{{Name: "MIGRATE_TOKEN", Value: "init-secret-value"}},
			}},
			Containers: []corev1.Container{
				{
					Name: "app", Image: "registry.example/web:3.4",
					Env: []corev1.EnvVar{
						{Name: "DB_PASSWORD", Value: "hunter2"},
						{Name: "EMPTY", Value: ""},
						{Name: "API_KEY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
							LocalObjectReference: corev1.LocalObjectReference{Name: "api"}, Key: "key"}}},
						{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
					},
					Resources: corev1.ResourceRequirements{Requests: quantities("cpu", "250m", "memory", "64Mi"), Limits: quantities("memory", "128Mi")},
				},
				{Name: "sidecar", Image: "registry.example/proxy:1.0", Env: []corev1.EnvVar{{Name: "PROXY_SECRET", Value: "sidecar-secret"}}},
			},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debugger", Image: "busybox", Env: []corev1.EnvVar{{Name: "DEBUG_TOKEN", Value: "ephemeral-secret"}}}}},
		},
		Status: corev1.PodStatus{StartTime: &metav1.Time{Time: time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)}},
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// statOf returns uid, gid and the full mode bits (with setgid) of path, not following a symlink.
func statOf(t *testing.T, path string) (uid, gid uint32, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid, fi.Mode()
}

// funcClock is a clock whose time is what the function says (a test's moving or stepping time).
type funcClock func() time.Time

func (f funcClock) Now() time.Time                  { return f() }
func (f funcClock) Since(t time.Time) time.Duration { return f().Sub(t) }
