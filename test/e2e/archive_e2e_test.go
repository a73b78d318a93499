//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/archiver"
	"github.com/keeplog/keeplog/pkg/store"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

// TestArchive runs the archiver inside the node plugin on a real single-node Kubernetes against a real OpenSSH sftp
// server: dumps of deleted pods arrive under <namespace>/<pod>/<uid>/ with their manifest, through the cluster-wide
// Lease semaphore, with policies from StorageClass parameters and pod annotations.
func TestArchive(t *testing.T) {
	ctx := context.Background()
	env := framework.SetupTest(t)
	sftp := framework.StartSFTP(t)
	if err := env.KillKeeplog(); err != nil {
		t.Fatal(err)
	}
	// A quiet period far longer than the test: a dump can only be found finished because its pod's volume was
	// unpublished.
	if err := env.StartKeeplog(ctx, sftp.Flag(), "--archive-quiet-period=10m", "--archive-cluster-uploads=1",
		"--namespace=kube-system"); err != nil {
		t.Fatal(err)
	}
	t.Run("DumpArrivesAfterPodDeleted", func(t *testing.T) { dumpArrives(ctx, t, env, sftp) })
	t.Run("PolicyFromStorageClassAndAnnotations", func(t *testing.T) { archivePolicies(ctx, t, env, sftp) })
}

// dumpPod runs a pod whose container "app" writes the given files (random data, KiB each) into its keeplog volume
// through subPath "app", then sleeps.
func dumpPod(ctx context.Context, t *testing.T, env *framework.Env, ns, name, sc string, ann map[string]string, files map[string]int) *corev1.Pod {
	t.Helper()
	script := ""
	for f, kib := range files {
		script += fmt.Sprintf("dd if=/dev/urandom of=/dumps/%s bs=1024 count=%d 2>/dev/null; ", f, kib)
	}
	script += "touch /dumps/written; while true; do sleep 1; done"
	vol := corev1.Volume{Name: "logs", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{
		VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &sc,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}},
		}}}}}
	spec := env.PodSpec(script, vol)
	spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "logs", MountPath: "/dumps", SubPath: "app"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: ann}, Spec: spec}
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := env.WaitPodRunning(ctx, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitExists(ctx, filepath.Join(env.PodDir(p), "app", "written")); err != nil {
		t.Fatalf("pod %s/%s did not write its files: %v", ns, name, err)
	}
	return p
}

func dumpArrives(ctx context.Context, t *testing.T, env *framework.Env, sftp *framework.SFTP) {
	ns := "archive-basic"
	mustNamespace(ctx, t, env, ns)
	pod := dumpPod(ctx, t, env, ns, "java", framework.StorageClass, nil,
		map[string]int{"java_pid1.hprof": 8192, "gc.log": 4})
	ref := podRef(pod)
	local := filepath.Join(env.PodDir(pod), "app", "java_pid1.hprof")
	remote := sftp.Archived(t, ref, "app/java_pid1.hprof")
	time.Sleep(3 * time.Second) // several archiver polls
	if _, err := os.Stat(remote); err == nil {
		t.Fatal("the dump was uploaded while its pod ran and before the quiet period: it could have been half-written")
	}
	if err := env.DeletePodAndWait(ctx, ns, pod.Name); err != nil {
		t.Fatal(err)
	}
	if err := waitExists(ctx, remote); err != nil {
		t.Fatalf("dump not archived after the pod was deleted: %v\nserver files: %v\nkeeplog:\n%s", err, sftp.Files(), env.KeeplogLog(40))
	}
	if got, want := sha(t, remote), sha(t, local); got != want {
		t.Fatalf("server copy sha256 %s, local %s", got, want)
	}
	var m archiver.Manifest
	b, err := os.ReadFile(remote + ".manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Namespace != ns || m.Pod != "java" || m.UID != string(pod.UID) || m.Node != env.Lab.NodeName() ||
		m.Container != "app" || m.Size != 8192*1024 || m.SHA256 != sha(t, local) {
		t.Fatalf("manifest %+v does not describe the dump of pod %s/java (uid %s) on %s", m, ns, pod.UID, env.Lab.NodeName())
	}
	if strings.Contains(strings.Join(sftp.Files(), "\n"), "gc.log") {
		t.Fatal("gc.log does not match the archive patterns but was uploaded")
	}
	// Visible state: an Event on the pod, the status file in the directory, the Lease of the upload semaphore.
	waitEvent(ctx, t, env, pod, api.ReasonArchived)
	status := filepath.Join(env.PodDir(pod), api.ArchiveStatusPath)
	if err := framework.WaitFileContains(ctx, status, `"state": "done"`); err != nil {
		t.Fatalf("status file: %v", err)
	}
	lease, err := env.Client.CoordinationV1().Leases("kube-system").Get(ctx, "keeplog-upload-0", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the upload went through the cluster semaphore but its Lease is missing: %v", err)
	}
	// The semaphore creates its Lease only to take it; once the upload is done the slot is free again.
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		lease, err = env.Client.CoordinationV1().Leases("kube-system").Get(ctx, "keeplog-upload-0", metav1.GetOptions{})
		return err == nil && lease.Spec.HolderIdentity == nil, nil
	}); err != nil {
		t.Fatalf("upload slot Lease not released after the upload: %+v (%v)", lease.Spec, err)
	}
}

func archivePolicies(ctx context.Context, t *testing.T, env *framework.Env, sftp *framework.SFTP) {
	ns := "archive-policy"
	mustNamespace(ctx, t, env, ns)
	retain := corev1.PersistentVolumeReclaimRetain
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "keeplog-first-only"}, Provisioner: framework.DriverName,
		ReclaimPolicy: &retain, VolumeBindingMode: &wffc,
		Parameters: map[string]string{api.ParamFirstOnly: "true", api.ParamDeleteAfterUpload: "true"}}
	if _, err := env.Client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// From the StorageClass: only the first dump of the container goes, and it is deleted locally once verified.
	first := dumpPod(ctx, t, env, ns, "first", sc.Name, nil, map[string]int{"a.hprof": 64, "b.hprof": 64})
	// From annotations: other patterns, firstOnly off, and one malformed value that must be reported, not applied.
	ann := map[string]string{api.AnnotationArchivePatterns: "*.bin", api.AnnotationFirstOnly: "false",
		api.AnnotationDeleteAfterUpload: "maybe"}
	annotated := dumpPod(ctx, t, env, ns, "annotated", sc.Name, ann, map[string]int{"x.hprof": 64, "y.bin": 64, "z.bin": 64})
	waitEvent(ctx, t, env, annotated, "InvalidKeeplogSetting")
	for _, p := range []*corev1.Pod{first, annotated} {
		if err := env.DeletePodAndWait(ctx, ns, p.Name); err != nil {
			t.Fatal(err)
		}
	}

	// firstOnly: exactly one of the two dumps is on the server; the uploaded one is gone locally, the other stays.
	var uploaded, kept []string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 90*time.Second, true, func(context.Context) (bool, error) {
		uploaded, kept = nil, nil
		for _, f := range []string{"a.hprof", "b.hprof"} {
			if _, err := os.Stat(sftp.Archived(t, podRef(first), "app/"+f)); err == nil {
				uploaded = append(uploaded, f)
			}
			if _, err := os.Stat(filepath.Join(env.PodDir(first), "app", f)); err == nil {
				kept = append(kept, f)
			}
		}
		return len(uploaded) == 1 && len(kept) == 1, nil
	})
	if err != nil || uploaded[0] == kept[0] {
		t.Fatalf("firstOnly+deleteAfterUpload: uploaded %v, kept locally %v; want one uploaded and deleted, the other kept\nkeeplog:\n%s",
			uploaded, kept, env.KeeplogLog(40))
	}
	status := filepath.Join(env.PodDir(first), api.ArchiveStatusPath)
	if err := framework.WaitFileContains(ctx, status, `"state": "skipped"`); err != nil {
		t.Fatalf("the second dump is not reported as skipped: %v", err)
	}

	// Annotations: both .bin files uploaded (firstOnly off), the .hprof not (patterns replaced). The malformed
	// delete-after-upload is ignored, so the StorageClass's deleteAfterUpload=true still applies to what is uploaded.
	ref := podRef(annotated)
	for _, f := range []string{"y.bin", "z.bin"} {
		if err := waitExists(ctx, sftp.Archived(t, ref, "app/"+f)); err != nil {
			t.Fatalf("%s not archived under the pod's own patterns: %v\nserver: %v", f, err, sftp.Files())
		}
		if err := waitGone(ctx, filepath.Join(env.PodDir(annotated), "app", f)); err != nil {
			t.Fatalf("%s uploaded but not deleted locally (StorageClass deleteAfterUpload): %v", f, err)
		}
	}
	if _, err := os.Stat(sftp.Archived(t, ref, "app/x.hprof")); err == nil {
		t.Fatal("x.hprof was uploaded although the pod's annotation replaced the patterns with *.bin")
	}
	if _, err := os.Stat(filepath.Join(env.PodDir(annotated), "app", "x.hprof")); err != nil {
		t.Fatalf("x.hprof, not archived, must stay on the node: %v", err)
	}
	waitEvent(ctx, t, env, annotated, api.ReasonArchived)
}

func podRef(p *corev1.Pod) store.PodRef {
	return store.PodRef{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID)}
}

func waitExists(ctx context.Context, path string) error {
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 90*time.Second, true, func(context.Context) (bool, error) {
		_, err := os.Stat(path)
		return err == nil, nil
	})
}

func waitGone(ctx context.Context, path string) error {
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		_, err := os.Lstat(path)
		return os.IsNotExist(err), nil
	})
}

// waitEvent waits for an Event with the reason on the pod (matched by UID: the pod may be deleted already) and
// returns its message.
func waitEvent(ctx context.Context, t *testing.T, env *framework.Env, pod *corev1.Pod, reason string) string {
	t.Helper()
	var seen []string
	msg := ""
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := env.Client.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		seen = seen[:0]
		for _, e := range evs.Items {
			if e.InvolvedObject.UID != pod.UID {
				continue
			}
			seen = append(seen, e.Reason+": "+e.Message)
			if e.Reason == reason {
				msg = e.Message
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s event on pod %s/%s; its events: %v", reason, pod.Namespace, pod.Name, seen)
	}
	return msg
}

func sha(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
