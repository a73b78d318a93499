//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

// describesPod: two containers running as a non-root user with an fsGroup write through subPath: <container>;
// keeplog describes the live pod (env values redacted), keeps its stdout after kubelet deleted its own copy, and
// records how each container ended (a non-zero exit with its reason and code).
func describesPod(ctx context.Context, t *testing.T, env *framework.Env) {
	ns := "scenario-describe"
	mustNamespace(ctx, t, env, ns)
	uid, gid, fsGroup := int64(1000), int64(3000), int64(2000)
	never := corev1.RestartPolicyNever
	vol := corev1.Volume{Name: "logs", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: claimTemplate()}}}
	spec := env.PodSpec("", vol)
	spec.RestartPolicy = never
	spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &gid, FSGroup: &fsGroup}
	web := spec.Containers[0]
	web.Name = "web"
	// web also mounts the whole volume and tries to change keeplog's metadata: fsGroupPolicy None keeps .keeplog/
	// root's, where File would have made it group-writable for the fsGroup at the mount.
	web.Command = []string{"sh", "-c", `echo "stdout from web"; echo "web as $(id -u)" > /logs/web.log
t=for  # so that the word the check looks for is not in pod.yaml's copy of this command
if echo ${t}ged >> /all/.keeplog/pod.yaml 2>/dev/null || echo ${t}ged > /all/.keeplog/${t}ged 2>/dev/null; then echo "keeplog metadata writable"; else echo "keeplog metadata protected"; fi
while true; do sleep 1; done`}
	web.VolumeMounts = []corev1.VolumeMount{{Name: "logs", MountPath: "/logs", SubPath: "web"}, {Name: "logs", MountPath: "/all"}}
	web.Env = []corev1.EnvVar{{Name: "DB_PASSWORD", Value: "hunter2-literal"}}
	sidecar := web
	sidecar.Name = "sidecar"
	sidecar.Env = nil
	sidecar.Command = []string{"sh", "-c", `echo "stdout from sidecar"; echo "sidecar as $(id -u)" > /logs/sidecar.log; sleep 2; exit 3`}
	sidecar.VolumeMounts = []corev1.VolumeMount{{Name: "logs", MountPath: "/logs", SubPath: "sidecar"}}
	spec.Containers = []corev1.Container{web, sidecar}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "two", Namespace: ns, Labels: map[string]string{"team": "shop"}}, Spec: spec}
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	live, err := env.WaitPodRunning(ctx, ns, "two")
	if err != nil {
		t.Fatal(err)
	}
	dir := env.PodDir(live)
	for _, c := range []string{"web", "sidecar"} {
		if err := framework.WaitFileContains(ctx, filepath.Join(dir, c, c+".log"), c+" as 1000"); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, c, c+".log"))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 {
			t.Errorf("%s wrote as uid %d, want 1000", c, st.Uid)
		}
	}
	meta := filepath.Join(dir, api.KeeplogDir)
	if err := framework.WaitFileContains(ctx, filepath.Join(meta, api.PodYAMLFile), "uid: "+string(live.UID)); err != nil {
		t.Fatal(err)
	}
	podYAML, err := os.ReadFile(filepath.Join(meta, api.PodYAMLFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name: web", "name: sidecar", "team: shop", "fsGroup: 2000", "DB_PASSWORD"} {
		if !strings.Contains(string(podYAML), want) {
			t.Errorf("pod.yaml does not match the live pod: no %q", want)
		}
	}
	if strings.Contains(string(podYAML), "hunter2-literal") || strings.Contains(string(podYAML), "managedFields:") {
		t.Error("pod.yaml holds a literal env value or managedFields")
	}
	summary, err := os.ReadFile(filepath.Join(meta, api.PodTextFile))
	if err != nil || !strings.Contains(string(summary), string(live.UID)) || !strings.Contains(string(summary), "sidecar") {
		t.Errorf("pod.txt %q %v", summary, err)
	}
	// The sidecar exits 3; then the pod is deleted.
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := env.Client.CoreV1().Pods(ns).Get(ctx, "two", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, s := range p.Status.ContainerStatuses {
			if s.Name == "sidecar" && s.State.Terminated != nil {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("sidecar did not exit: %v", err)
	}
	for _, c := range []string{"web", "sidecar"} {
		if err := framework.WaitFileContains(ctx, filepath.Join(meta, api.LogsDir, c, "0.log"), "stdout from "+c); err != nil {
			t.Fatal(err)
		}
	}
	if err := framework.WaitFileContains(ctx, filepath.Join(meta, api.LogsDir, "web", "0.log"), "keeplog metadata protected"); err != nil {
		t.Fatalf("a pod with an fsGroup could write to .keeplog/: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(meta, api.PodYAMLFile)); strings.Contains(string(data), "forged") {
		t.Fatal("the pod appended to .keeplog/pod.yaml")
	}
	if _, err := os.Lstat(filepath.Join(meta, "forged")); !os.IsNotExist(err) {
		t.Fatalf("the pod created a file in .keeplog/: %v", err)
	}
	if err := env.DeletePodAndWait(ctx, ns, "two"); err != nil {
		t.Fatal(err)
	}
	kubeletCopy := filepath.Join(env.PodLogsDir(), ns+"_two_"+string(live.UID))
	// kubelet removes a deleted pod's log directory in its container garbage collection, once a minute.
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
		_, err := os.Stat(kubeletCopy)
		return os.IsNotExist(err), nil
	})
	if err != nil {
		t.Fatalf("kubelet kept %s: %v", kubeletCopy, err)
	}
	for _, c := range []string{"web", "sidecar"} {
		data, err := os.ReadFile(filepath.Join(meta, api.LogsDir, c, "0.log"))
		if err != nil || !strings.Contains(string(data), "stdout from "+c) {
			t.Errorf("%s's stdout not kept after kubelet deleted its copy: %q %v", c, data, err)
		}
	}
	ended, err := os.ReadFile(filepath.Join(meta, api.EndedTextFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ended), "exit code 3") || !strings.Contains(string(ended), "Error") {
		t.Errorf("ended.txt does not say the sidecar exited 3 (Error):\n%s", ended)
	}
	// The pod was deleted: ended.txt says when that was asked and by when it was due, never "Deleted:" (the API's
	// deletionTimestamp is that deadline, not when the pod went).
	if !strings.Contains(string(ended), "Delete requested: ") || !strings.Contains(string(ended), "Delete deadline:  ") ||
		strings.Contains(string(ended), "Deleted:") {
		t.Errorf("ended.txt does not name the deletion's request and deadline:\n%s", ended)
	}
}

// apiDownAtPublish: with the API unreachable the pod still starts with minimal metadata; once keeplog reaches the
// API again (restarted with a working kubeconfig), it completes the description in the background.
func apiDownAtPublish(ctx context.Context, t *testing.T, env *framework.Env) {
	ns := "scenario-apidown"
	mustNamespace(ctx, t, env, ns)
	bad, err := env.UnreachableKubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := env.KillKeeplog(); err != nil {
		t.Fatal(err)
	}
	if err := env.StartKeeplog(ctx, "--kubeconfig="+bad); err != nil {
		t.Fatal(err)
	}
	pod := runPod(ctx, t, env, ns, "lonely", corev1.Volume{Name: "logs",
		VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: framework.DriverName}}})
	meta := filepath.Join(env.PodDir(pod), api.KeeplogDir)
	if err := framework.WaitFileContains(ctx, filepath.Join(meta, api.PodTextFile), string(pod.UID)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(meta, api.PodYAMLFile)); !os.IsNotExist(err) {
		t.Fatalf("pod.yaml written although the API was unreachable: %v", err)
	}
	if err := env.KillKeeplog(); err != nil {
		t.Fatal(err)
	}
	if err := env.StartKeeplog(ctx); err != nil {
		t.Fatal(err)
	}
	if err := framework.WaitFileContains(ctx, filepath.Join(meta, api.PodYAMLFile), "uid: "+string(pod.UID)); err != nil {
		t.Fatalf("metadata not completed once the API answered: %v", err)
	}
	if err := env.DeletePodAndWait(ctx, ns, pod.Name); err != nil {
		t.Fatal(err)
	}
}

// restartingContainer: with a periodic copy only once an hour, the stdout of each ended instance of a crashing
// container is in the volume while the pod still runs: the pod informer tells keeplog that a container ended, and it
// copies at once (kubelet keeps only the last ended instance's log).
func restartingContainer(ctx context.Context, t *testing.T, env *framework.Env) {
	ns := "scenario-restart"
	mustNamespace(ctx, t, env, ns)
	if err := env.KillKeeplog(); err != nil {
		t.Fatal(err)
	}
	if err := env.StartKeeplog(ctx, "--describe-interval=1h"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.KillKeeplog(); err != nil {
			t.Error(err)
			return
		}
		if err := env.StartKeeplog(ctx); err != nil {
			t.Error(err)
		}
	})
	spec := env.PodSpec(`echo "instance started at $(date +%s%N)"; sleep 1; exit 1`,
		corev1.Volume{Name: "logs", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: framework.DriverName}}})
	spec.RestartPolicy = corev1.RestartPolicyAlways
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "crashy", Namespace: ns}, Spec: spec}
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var live *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := env.Client.CoreV1().Pods(ns).Get(ctx, "crashy", metav1.GetOptions{})
		if err != nil || len(p.Status.ContainerStatuses) == 0 {
			return false, nil
		}
		live = p
		return p.Status.ContainerStatuses[0].RestartCount >= 2, nil
	})
	if err != nil {
		t.Fatalf("the container did not restart twice: %v", err)
	}
	c := live.Spec.Containers[0].Name
	logs := filepath.Join(env.PodDir(live), api.KeeplogDir, api.LogsDir, c)
	for _, name := range []string{"0.log", "1.log"} {
		if err := framework.WaitFileContains(ctx, filepath.Join(logs, name), "instance started at"); err != nil {
			t.Fatalf("stdout of an ended instance not copied while the pod runs (periodic copy is hourly): %v", err)
		}
	}
	if err := env.DeletePodAndWait(ctx, ns, "crashy"); err != nil {
		t.Fatal(err)
	}
}
