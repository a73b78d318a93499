//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

const writer = `echo "stdout from $HOSTNAME"; echo "hello from $HOSTNAME" > /logs/app.log; while true; do date >> /logs/ticks.log; sleep 1; done`

// TestKeeplog runs the CSI core scenarios on one real single-node Kubernetes, in order.
func TestKeeplog(t *testing.T) {
	ctx := context.Background()
	env := framework.SetupTest(t)
	t.Run("GenericEphemeralVolumeOutlivesPod", func(t *testing.T) { genericEphemeral(ctx, t, env) })
	t.Run("InlineEphemeralVolumeOutlivesPod", func(t *testing.T) { inlineEphemeral(ctx, t, env) })
	t.Run("DeploymentGetsOneDirectoryPerPod", func(t *testing.T) { deployment(ctx, t, env) })
	t.Run("StatefulSetPodRecreatedGetsSecondDirectory", func(t *testing.T) { statefulSet(ctx, t, env) })
	t.Run("PluginKilledWhilePodsRun", func(t *testing.T) { pluginKilled(ctx, t, env) })
	t.Run("DescribesPodAndKeepsStdout", func(t *testing.T) { describesPod(ctx, t, env) })
	t.Run("PodStartsWhileAPIUnreachable", func(t *testing.T) { apiDownAtPublish(ctx, t, env) })
	t.Run("RestartingContainerLogsCopiedAtOnce", func(t *testing.T) { restartingContainer(ctx, t, env) })
}

func claimTemplate() *corev1.PersistentVolumeClaimTemplate {
	sc := framework.StorageClass
	return &corev1.PersistentVolumeClaimTemplate{Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		StorageClassName: &sc,
		Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}},
	}}
}

func mustNamespace(ctx context.Context, t *testing.T, env *framework.Env, name string) {
	t.Helper()
	if err := env.CreateNamespace(ctx, name); err != nil {
		t.Fatal(err)
	}
}

func runPod(ctx context.Context, t *testing.T, env *framework.Env, ns, name string, vol corev1.Volume) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: env.PodSpec(writer, vol)}
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := env.WaitPodRunning(ctx, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Scenario 1: a generic ephemeral volume from the StorageClass; the file outlives the pod; the PV is Released.
func genericEphemeral(ctx context.Context, t *testing.T, env *framework.Env) {
	ns := "scenario-generic"
	mustNamespace(ctx, t, env, ns)
	pod := runPod(ctx, t, env, ns, "java-app", corev1.Volume{Name: "logs",
		VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: claimTemplate()}}})
	dir := env.PodDir(pod)
	if err := framework.WaitFileContains(ctx, filepath.Join(dir, "app.log"), "hello from"); err != nil {
		t.Fatal(err)
	}
	pvc, err := env.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "java-app-logs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvName := pvc.Spec.VolumeName
	pv, err := env.Client.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The pod is described in its directory: the live object, a directory per container, its stdout kept.
	meta := filepath.Join(dir, api.KeeplogDir)
	if err := framework.WaitFileContains(ctx, filepath.Join(meta, api.PodYAMLFile), "uid: "+string(pod.UID)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "app")); err != nil || !fi.IsDir() {
		t.Fatalf("no directory for container app: %v", err)
	}
	stdout := filepath.Join(meta, api.LogsDir, "app", "0.log")
	if err := framework.WaitFileContains(ctx, stdout, "stdout from"); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		pv, err := env.Client.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
		return err == nil && strings.Contains(pv.Annotations[api.AnnotationPVPods], string(pod.UID)), nil
	}); err != nil {
		t.Fatalf("PV %s not annotated with pod %s: %v", pvName, pod.UID, err)
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain || pv.Spec.CSI == nil ||
		!strings.HasPrefix(pv.Spec.CSI.VolumeHandle, "v1:"+env.Lab.NodeName()+":pvc-") {
		t.Fatalf("PV %s: reclaim %s, csi %+v", pvName, pv.Spec.PersistentVolumeReclaimPolicy, pv.Spec.CSI)
	}
	if err := env.DeletePodAndWait(ctx, ns, pod.Name); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "app.log")); err != nil || !strings.Contains(string(data), "hello from") {
		t.Fatalf("file gone with the pod: %q %v", data, err)
	}
	if data, err := os.ReadFile(stdout); err != nil || !strings.Contains(string(data), "stdout from") {
		t.Fatalf("stdout gone with the pod: %q %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(meta, api.EndedTextFile)); err != nil {
		t.Fatalf("how the pod ended was not recorded: %v", err)
	}
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		pv, err := env.Client.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
		return err == nil && pv.Status.Phase == corev1.VolumeReleased, nil
	})
	if err != nil {
		t.Fatalf("PV %s not Released after its pod and claim went: %v", pvName, err)
	}
	assertNotMounted(t, env, pod)
}

// Scenario 2: a CSI inline ephemeral volume.
func inlineEphemeral(ctx context.Context, t *testing.T, env *framework.Env) {
	ns := "scenario-inline"
	mustNamespace(ctx, t, env, ns)
	pod := runPod(ctx, t, env, ns, "batch", corev1.Volume{Name: "logs",
		VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: framework.DriverName}}})
	dir := env.PodDir(pod)
	if err := framework.WaitFileContains(ctx, filepath.Join(dir, "app.log"), "hello from"); err != nil {
		t.Fatal(err)
	}
	if err := env.DeletePodAndWait(ctx, ns, pod.Name); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "app.log")); err != nil || !strings.Contains(string(data), "hello from") {
		t.Fatalf("inline volume's file gone with the pod: %q %v", data, err)
	}
	assertNotMounted(t, env, pod)
}

// Scenario 3a: three replicas sharing one claim get three directories, all owned by that one volume.
func deployment(ctx context.Context, t *testing.T, env *framework.Env) {
	ns := "scenario-deploy"
	mustNamespace(ctx, t, env, ns)
	sc := framework.StorageClass
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "shared-logs", Namespace: ns}, Spec: claimTemplate().Spec}
	pvc.Spec.StorageClassName = &sc
	if _, err := env.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	replicas := int32(3)
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: env.PodSpec(writer, corev1.Volume{Name: "logs",
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "shared-logs"}}})},
	}}
	if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 120*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, nil
		}
		pods = list.Items
		running := 0
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == 3, nil
	})
	if err != nil {
		t.Fatalf("3 replicas not running: %v", err)
	}
	dirs := map[string]bool{}
	for i := range pods {
		dir := env.PodDir(&pods[i])
		if err := framework.WaitFileContains(ctx, filepath.Join(dir, "app.log"), "hello from"); err != nil {
			t.Fatal(err)
		}
		dirs[dir] = true
	}
	if len(dirs) != 3 {
		t.Fatalf("3 pods wrote into %d directories: %v", len(dirs), dirs)
	}
	volumes := volumeRecords(t, env)
	bound, err := env.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "shared-logs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pv, err := env.Client.CoreV1().PersistentVolumes().Get(ctx, bound.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := volumes[pv.Spec.CSI.VolumeHandle]; len(got) != 3 {
		t.Fatalf("volume %s owns %v, want the 3 pod directories", pv.Spec.CSI.VolumeHandle, got)
	}
	// Scaling the Deployment away unpublishes all three; all three directories stay.
	if err := env.Client.AppsV1().Deployments(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := env.WaitNoPods(ctx, ns, "app=web"); err != nil {
		t.Fatal(err)
	}
	for dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "app.log")); err != nil {
			t.Errorf("directory of a deleted replica lost: %v", err)
		}
	}
}

// Scenario 3b: a StatefulSet pod deleted and recreated on the same claim gets a second directory; the first stays.
func statefulSet(ctx context.Context, t *testing.T, env *framework.Env) {
	ns := "scenario-sts"
	mustNamespace(ctx, t, env, ns)
	replicas := int32(1)
	labels := map[string]string{"app": "db"}
	tmpl := claimTemplate()
	s := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns}, Spec: appsv1.StatefulSetSpec{
		Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template:             corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: env.PodSpec(writer, corev1.Volume{Name: "logs"})},
		VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "logs"}, Spec: tmpl.Spec}},
	}}
	s.Spec.Template.Spec.Volumes = nil // the claim template provides "logs"
	if _, err := env.Client.AppsV1().StatefulSets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	first, err := env.WaitPodRunning(ctx, ns, "db-0")
	if err != nil {
		t.Fatal(err)
	}
	firstDir := env.PodDir(first)
	if err := framework.WaitFileContains(ctx, filepath.Join(firstDir, "app.log"), "hello from"); err != nil {
		t.Fatal(err)
	}
	if err := env.DeletePodAndWait(ctx, ns, "db-0"); err != nil {
		t.Fatal(err)
	}
	var second *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 120*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := env.Client.CoreV1().Pods(ns).Get(ctx, "db-0", metav1.GetOptions{})
		if err != nil || p.UID == first.UID || p.Status.Phase != corev1.PodRunning {
			return false, nil
		}
		second = p
		return true, nil
	})
	if err != nil {
		t.Fatalf("db-0 not recreated: %v", err)
	}
	secondDir := env.PodDir(second)
	if secondDir == firstDir {
		t.Fatal("recreated pod reused the first pod's directory")
	}
	if err := framework.WaitFileContains(ctx, filepath.Join(secondDir, "app.log"), "hello from"); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(firstDir, "app.log")); err != nil || !strings.Contains(string(data), "hello from") {
		t.Fatalf("first pod's directory lost: %q %v", data, err)
	}
	if err := env.Client.AppsV1().StatefulSets(ns).Delete(ctx, "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := env.WaitNoPods(ctx, ns, "app=db"); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{firstDir, secondDir} {
		if _, err := os.Stat(filepath.Join(dir, "app.log")); err != nil {
			t.Errorf("directory lost after the StatefulSet went: %v", err)
		}
	}
}

// Scenario 4: SIGKILL the plugin while pods run, restart it: the running pod keeps writing through its mount, and
// the later unpublish (pod deletion) works.
func pluginKilled(ctx context.Context, t *testing.T, env *framework.Env) {
	ns := "scenario-crash"
	mustNamespace(ctx, t, env, ns)
	pod := runPod(ctx, t, env, ns, "survivor", corev1.Volume{Name: "logs",
		VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: claimTemplate()}}})
	ticks := filepath.Join(env.PodDir(pod), "ticks.log")
	if err := framework.WaitFileContains(ctx, ticks, "UTC"); err != nil {
		t.Fatal(err)
	}
	if err := env.KillKeeplog(); err != nil {
		t.Fatal(err)
	}
	sizeAtKill := fileSize(t, ticks)
	if err := env.StartKeeplog(ctx); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return fileSize(t, ticks) > sizeAtKill, nil
	})
	if err != nil {
		t.Fatalf("the pod stopped writing through its mount after the plugin restart: %v", err)
	}
	if err := env.DeletePodAndWait(ctx, ns, pod.Name); err != nil {
		t.Fatalf("unpublish after restart: %v\n%s", err, env.KeeplogLog(30))
	}
	assertNotMounted(t, env, pod)
	if !strings.Contains(env.KeeplogLog(200), "Volume unpublished") {
		t.Errorf("the restarted plugin did not unpublish:\n%s", env.KeeplogLog(40))
	}
	if _, err := os.Stat(ticks); err != nil {
		t.Fatalf("data lost: %v", err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// assertNotMounted checks that nothing of the pod is still mounted in kubelet's directory.
func assertNotMounted(t *testing.T, env *framework.Env, pod *corev1.Pod) {
	t.Helper()
	if m := framework.MountsUnder("/var/lib/kubelet/pods/" + string(pod.UID)); len(m) > 0 {
		t.Errorf("pod %s/%s still has mounts after deletion: %v", pod.Namespace, pod.Name, m)
	}
}

// volumeRecords reads keeplog's own records on the node: volume ID → pod directories it owns.
func volumeRecords(t *testing.T, env *framework.Env) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	vols, err := os.ReadDir(filepath.Join(env.Root, ".keeplog", "volumes"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		pods, err := os.ReadDir(filepath.Join(env.Root, ".keeplog", "volumes", v.Name(), "pods"))
		if err != nil {
			t.Fatal(fmt.Errorf("volume %s: %w", v.Name(), err))
		}
		for _, p := range pods {
			out[v.Name()] = append(out[v.Name()], strings.TrimSuffix(p.Name(), ".json"))
		}
	}
	return out
}
