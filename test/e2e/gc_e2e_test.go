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

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

const (
	gcRetention = 20 * time.Second
	gcClass     = "keeplog-retain-20s"
)

// TestGC runs retention and garbage collection on a real single-node Kubernetes: a StorageClass with retainFor 20s,
// keeplog passing every 2s.
func TestGC(t *testing.T) {
	ctx := context.Background()
	env := framework.SetupTest(t)
	if err := env.CreateKeeplogStorageClass(ctx, gcClass, map[string]string{api.ParamRetainFor: gcRetention.String()}); err != nil {
		t.Fatal(err)
	}
	restartKeeplog(ctx, t, env, gcFlags()...)
	t.Run("DirectoryAndReleasedPVGoAfterRetentionPublishedUntouched", func(t *testing.T) { gcRetentionScenario(ctx, t, env) })
	t.Run("PlantedSymlinksRemovedNothingOutside", func(t *testing.T) { gcSymlinks(ctx, t, env) })
	t.Run("UnuploadedDumpKeptUntilUploadSucceeds", func(t *testing.T) { gcArchivePending(ctx, t, env) })
	t.Run("PVOfVanishedNodeDeletedByTheLeader", func(t *testing.T) { gcVanishedNode(ctx, t, env) })
}

// gcOrphanGrace is how long a PV whose node is gone is kept in this test.
const gcOrphanGrace = 10 * time.Second

// gcFlags are the flags every keeplog of TestGC runs with: a pass every 2s, and a short grace for PVs of vanished
// nodes.
func gcFlags() []string {
	return []string{"--gc-interval=2s", "--orphan-pv-grace=" + gcOrphanGrace.String()}
}

// gcVanishedNode: a keeplog PV pinned to a node that does not exist (a node removed from the cluster, with its
// plugin) is marked, kept for the grace period, then deleted, finalizer included, by the instance that holds the
// GC leader Lease; the PVs of the live node are not touched.
func gcVanishedNode(ctx context.Context, t *testing.T, env *framework.Env) {
	ghost := "ghost-node"
	pv := framework.NodePV("pvc-ghost", ghost, gcClass)
	created, err := env.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	live, err := env.Client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var marked time.Time
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := env.Client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		if err != nil {
			return err != nil && strings.Contains(err.Error(), "not found"), nil
		}
		if v := got.Annotations[api.AnnotationPVNodeMissingSince]; v != "" && marked.IsZero() {
			marked = time.Now()
		}
		return false, nil
	})
	if err != nil {
		got, _ := env.Client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		var lines []string
		for _, l := range strings.Split(env.KeeplogLog(3000), "\n") {
			if strings.Contains(l, "leader") || strings.Contains(l, "lead") || strings.Contains(l, "rphan") || strings.Contains(l, "ghost") {
				lines = append(lines, l)
			}
		}
		t.Fatalf("the PV of vanished node %s was not deleted: %v\nPV now: %+v %+v\nkeeplog:\n%s", ghost, err,
			got.ObjectMeta, got.Status, strings.Join(lines, "\n"))
	}
	if marked.IsZero() {
		t.Fatalf("the PV was deleted without first being marked %s", api.AnnotationPVNodeMissingSince)
	}
	if held := time.Since(created.CreationTimestamp.Time); held < gcOrphanGrace {
		t.Fatalf("the PV was deleted %s after it was created, before the %s grace period", held, gcOrphanGrace)
	}
	lease, err := env.Client.CoordinationV1().Leases("kube-system").Get(ctx, "keeplog-gc-leader", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != env.Lab.NodeName() {
		t.Fatalf("GC leader Lease: %+v (%v); want it held by %s", lease, err, env.Lab.NodeName())
	}
	for _, p := range live.Items {
		if p.Name == pv.Name {
			continue
		}
		if _, err := env.Client.CoreV1().PersistentVolumes().Get(ctx, p.Name, metav1.GetOptions{}); err != nil &&
			!strings.Contains(err.Error(), "not found") {
			t.Fatalf("reading PV %s: %v", p.Name, err)
		} else if err == nil {
			continue
		}
		// A PV of the live node may go only through its own retention (Released → Delete → DeleteVolume).
		if !strings.HasPrefix(p.Spec.CSI.VolumeHandle, "v1:"+env.Lab.NodeName()+":") {
			t.Fatalf("PV %s (%s) was deleted", p.Name, p.Spec.CSI.VolumeHandle)
		}
	}
}

func restartKeeplog(ctx context.Context, t *testing.T, env *framework.Env, flags ...string) {
	t.Helper()
	if err := env.KillKeeplog(); err != nil {
		t.Fatal(err)
	}
	if err := env.StartKeeplog(ctx, flags...); err != nil {
		t.Fatal(err)
	}
}

func gcClaim() *corev1.PersistentVolumeClaimTemplate {
	sc := gcClass
	return &corev1.PersistentVolumeClaimTemplate{Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		StorageClassName: &sc,
		Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}},
	}}
}

func gcEphemeral() corev1.Volume {
	return corev1.Volume{Name: "logs", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: gcClaim()}}}
}

// gcPVOf returns the PV name of the pod's generic ephemeral volume "logs".
func gcPVOf(ctx context.Context, t *testing.T, env *framework.Env, pod *corev1.Pod) string {
	t.Helper()
	pvc, err := env.Client.CoreV1().PersistentVolumeClaims(pod.Namespace).Get(ctx, pod.Name+"-logs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pvc.Spec.VolumeName
}

// unpublishedAt is when keeplog recorded the pod directory's unpublish: the retention clock's start.
func unpublishedAt(ctx context.Context, t *testing.T, env *framework.Env, dir string) (string, time.Time) {
	t.Helper()
	var vol string
	var at time.Time
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		v, rec, err := env.PodDirRecord(dir)
		if err != nil {
			return false, nil
		}
		vol, at = v, rec.UnpublishedAt
		return !at.IsZero(), nil
	})
	if err != nil {
		t.Fatalf("no unpublish time recorded for %s: %v", dir, err)
	}
	return vol, at
}

// Pod deleted → its directory and its Released PV are gone after the retention, not before; a pod that keeps
// running on the same StorageClass is never touched.
func gcRetentionScenario(ctx context.Context, t *testing.T, env *framework.Env) {
	ns := "gc-retention"
	mustNamespace(ctx, t, env, ns)
	keeper := runPod(ctx, t, env, ns, "keeper", gcEphemeral())
	short := runPod(ctx, t, env, ns, "short", gcEphemeral())
	dir, keeperDir := env.PodDir(short), env.PodDir(keeper)
	for _, d := range []string{dir, keeperDir} {
		if err := framework.WaitFileContains(ctx, filepath.Join(d, "app.log"), "hello from"); err != nil {
			t.Fatal(err)
		}
	}
	pvName, keeperPV := gcPVOf(ctx, t, env, short), gcPVOf(ctx, t, env, keeper)
	if err := env.DeletePodAndWait(ctx, ns, short.Name); err != nil {
		t.Fatal(err)
	}
	vol, unpub := unpublishedAt(ctx, t, env, filepath.Base(dir))
	// Well inside the retention: directory, records and PV all still there, the PV Released and still Retain.
	time.Sleep(time.Until(unpub.Add(gcRetention * 3 / 5)))
	if _, err := os.Stat(filepath.Join(dir, "app.log")); err != nil {
		t.Fatalf("directory gone %s after unpublish, before its retention of %s: %v", time.Since(unpub), gcRetention, err)
	}
	pv, err := env.Client.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
	if err != nil || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		t.Fatalf("PV %s before the retention ended: %v %+v", pvName, err, pv.Spec.PersistentVolumeReclaimPolicy)
	}
	// The stdout copies' kubelet-layout links (<root>/.pods/<dir>) live and die with the directory.
	podLogs := filepath.Join(env.Root, api.PodLogsDir, filepath.Base(dir))
	if _, err := os.Stat(filepath.Join(podLogs, "app", "0.log")); err != nil {
		t.Fatalf("stdout of the deleted pod not in the kubelet-layout tree: %v", err)
	}
	gone, err := framework.WaitPathGone(ctx, dir, 90*time.Second)
	if err != nil {
		t.Fatalf("%v\nkeeplog:\n%s", err, env.KeeplogLog(40))
	}
	if _, err := os.Lstat(podLogs); !os.IsNotExist(err) {
		t.Errorf("%s outlived its pod directory: %v", podLogs, err)
	}
	if after := gone.Sub(unpub); after < gcRetention {
		t.Fatalf("directory deleted %s after unpublish, before its retention of %s", after, gcRetention)
	} else {
		t.Logf("directory deleted %s after unpublish (retention %s, passes every 2s)", after.Round(100*time.Millisecond), gcRetention)
	}
	if err := env.WaitPVGone(ctx, pvName, 90*time.Second); err != nil {
		t.Fatalf("%v\nkeeplog:\n%s", err, env.KeeplogLog(40))
	}
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return !env.VolumeRecordExists(vol), nil
	}); err != nil {
		t.Fatalf("records of volume %s still there after its PV was deleted (DeleteVolume not called?)", vol)
	}
	evs, err := env.GCEventsOf(ctx, short, api.ReasonLogDirectoryDeleted)
	if err != nil || len(evs) == 0 || !strings.Contains(evs[0].Message, "retention 20s expired") {
		t.Fatalf("no %s Event on the deleted pod: %v %+v", api.ReasonLogDirectoryDeleted, err, evs)
	}
	// The pod that kept running: published far longer than the retention, untouched.
	if err := framework.WaitFileContains(ctx, filepath.Join(keeperDir, "app.log"), "hello from"); err != nil {
		t.Fatalf("published directory touched: %v", err)
	}
	before := fileSize(t, filepath.Join(keeperDir, "ticks.log"))
	time.Sleep(2 * time.Second)
	if fileSize(t, filepath.Join(keeperDir, "ticks.log")) <= before {
		t.Fatal("the running pod no longer writes to its directory")
	}
	pv, err = env.Client.CoreV1().PersistentVolumes().Get(ctx, keeperPV, metav1.GetOptions{})
	if err != nil || pv.Status.Phase != corev1.VolumeBound || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		t.Fatalf("running pod's PV %s: %v %+v", keeperPV, err, pv)
	}
	if err := env.DeletePodAndWait(ctx, ns, keeper.Name); err != nil {
		t.Fatal(err)
	}
}

// A pod plants victim -> /, x -> /etc and links to a canary directory on the node outside the root; its CSI inline
// volume (retainFor 5s) is collected: the links go, everything they point at stays, and so does the volume's record.
func gcSymlinks(ctx context.Context, t *testing.T, env *framework.Env) {
	ns := "gc-symlinks"
	mustNamespace(ctx, t, env, ns)
	canaryDir := t.TempDir()
	canary := filepath.Join(canaryDir, "canary")
	if err := os.WriteFile(canary, []byte("must survive"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`set -e; ln -s / /logs/victim; ln -s /etc /logs/x; ln -s %[1]s /logs/canary-dir; `+
		`mkdir -p /logs/app/deep; ln -s %[2]s /logs/app/deep/canary; ln -s ../../../../../../.. /logs/app/deep/up; `+
		`ln -s /etc/passwd /logs/app/deep/passwd; echo planted > /logs/planted; while true; do sleep 1; done`, canaryDir, canary)
	vol := corev1.Volume{Name: "logs", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
		Driver: framework.DriverName, VolumeAttributes: map[string]string{api.ParamRetainFor: "5s"}}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "planter", Namespace: ns}, Spec: env.PodSpec(script, vol)}
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := env.WaitPodRunning(ctx, ns, pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	dir := env.PodDir(pod)
	if err := framework.WaitFileContains(ctx, filepath.Join(dir, "planted"), "planted"); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "victim")); err != nil || target != "/" {
		t.Fatalf("victim link: %q %v", target, err)
	}
	volID, _, err := env.PodDirRecord(filepath.Base(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := env.DeletePodAndWait(ctx, ns, pod.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := framework.WaitPathGone(ctx, dir, 60*time.Second); err != nil {
		t.Fatalf("%v\nkeeplog:\n%s", err, env.KeeplogLog(40))
	}
	for _, p := range []string{canary, "/etc/passwd", "/etc/hostname", env.Root, filepath.Join(env.Root, api.KeeplogDir, "volumes")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is gone after GC removed a directory with links to it: %v", p, err)
		}
	}
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		return !env.VolumeRecordExists(volID), nil
	}); err != nil {
		t.Fatalf("record of inline volume %s still there after its directory went", volID)
	}
}

// With the SFTP server down, a deleted pod's heap dump cannot be uploaded: its directory stays past the retention.
// Once the server is back and the upload succeeded, the directory goes.
func gcArchivePending(ctx context.Context, t *testing.T, env *framework.Env) {
	sftp := framework.StartSFTP(t)
	sftp.Server.Stop()
	restartKeeplog(ctx, t, env, append(gcFlags(), sftp.Flag(), "--archive-quiet-period=10m")...)
	ns := "gc-archive"
	mustNamespace(ctx, t, env, ns)
	script := `dd if=/dev/urandom of=/dumps/java_pid1.hprof bs=1024 count=1024 2>/dev/null; touch /dumps/written; while true; do sleep 1; done`
	spec := env.PodSpec(script, gcEphemeral())
	spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "logs", MountPath: "/dumps", SubPath: "app"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "java", Namespace: ns}, Spec: spec}
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := env.WaitPodRunning(ctx, ns, pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	dir := env.PodDir(pod)
	if err := framework.WaitFileContains(ctx, filepath.Join(dir, "app", "written"), ""); err != nil {
		t.Fatal(err)
	}
	pvName := gcPVOf(ctx, t, env, pod)
	if err := env.DeletePodAndWait(ctx, ns, pod.Name); err != nil {
		t.Fatal(err)
	}
	_, unpub := unpublishedAt(ctx, t, env, filepath.Base(dir))
	// Retention plus several passes: still there, the dump with it, the PV too.
	time.Sleep(time.Until(unpub.Add(gcRetention + 10*time.Second)))
	if _, err := os.Stat(filepath.Join(dir, "app", "java_pid1.hprof")); err != nil {
		t.Fatalf("the un-uploaded dump is gone %s after unpublish while the SFTP server is down: %v\nkeeplog:\n%s",
			time.Since(unpub), err, env.KeeplogLog(40))
	}
	if _, err := env.Client.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{}); err != nil {
		t.Fatalf("PV %s of a directory kept for the archive: %v", pvName, err)
	}
	sftp.Server.Start()
	remote := sftp.Archived(t, store.PodRef{Namespace: ns, Name: pod.Name, UID: string(pod.UID)}, "app/java_pid1.hprof")
	if _, err := framework.WaitPathGone(ctx, dir, 3*time.Minute); err != nil {
		t.Fatalf("%v\nserver files: %v\nkeeplog:\n%s", err, sftp.Files(), env.KeeplogLog(40))
	}
	if fi, err := os.Stat(remote); err != nil || fi.Size() != 1024*1024 {
		t.Fatalf("directory deleted but the dump is not on the server (%v): %v", fi, err)
	}
	if err := env.WaitPVGone(ctx, pvName, 90*time.Second); err != nil {
		t.Fatal(err)
	}
}
