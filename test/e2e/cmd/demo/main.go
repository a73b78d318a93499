// Command demo runs keeplog's main job on a real single-node Kubernetes: a pod with a keeplog volume from the
// StorageClass writes its logs, is deleted, and its directory stays on the node. It prints what a user looks at
// (the directory tree on the node, the PV) and stops everything it started.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keeplog/keeplog/test/e2e/framework"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func run(ctx context.Context) (err error) {
	step("Starting a single-node Kubernetes (etcd, apiserver, controller-manager, scheduler, containerd, kubelet) and keeplog")
	env, err := framework.Setup(ctx, func(f string, a ...any) { fmt.Printf("    "+f+"\n", a...) })
	if err != nil {
		return err
	}
	defer func() {
		step("Stopping everything the demo started")
		if terr := env.Teardown(context.Background()); terr != nil && err == nil {
			err = terr
		}
	}()
	ns, name := "demo", "java-app"
	if err := env.CreateNamespace(ctx, ns); err != nil {
		return err
	}
	sc := framework.StorageClass
	vol := corev1.Volume{Name: "logs", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{
		VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &sc,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		}}}}}
	script := `mkdir -p /logs/app; echo "GC pause 12ms" > /logs/app/gc.log; echo "GET /health 200" > /logs/app/access.log; ` +
		`while true; do date >> /logs/app/ticks.log; sleep 1; done`
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: env.PodSpec(script, vol)}
	step("Creating pod %s/%s with a generic ephemeral volume from StorageClass %q", ns, name, sc)
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return err
	}
	running, err := env.WaitPodRunning(ctx, ns, name)
	if err != nil {
		return err
	}
	dir := env.PodDir(running)
	if err := framework.WaitFileContains(ctx, filepath.Join(dir, "app", "ticks.log"), "UTC"); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	out, _ := env.Lab.Kubectl(ctx, "get", "pvc,pv", "-n", ns, "-o", "wide")
	fmt.Print(out)

	step("Deleting the pod")
	if err := env.DeletePodAndWait(ctx, ns, name); err != nil {
		return err
	}
	time.Sleep(3 * time.Second) // the ephemeral-volume controller deletes the claim; the PV becomes Released
	step("The pod is gone; its directory on the node is still there: %s", dir)
	fmt.Print(framework.Tree(env.Root))
	data, err := os.ReadFile(filepath.Join(dir, "app", "gc.log"))
	if err != nil {
		return fmt.Errorf("the pod's file is gone: %w", err)
	}
	fmt.Printf("\n%s/app/gc.log:\n%s", dir, data)
	step("The PersistentVolume is Released and kept (reclaimPolicy Retain)")
	out, _ = env.Lab.Kubectl(ctx, "get", "pv", "-o", "custom-columns=NAME:.metadata.name,STATUS:.status.phase,RECLAIM:.spec.persistentVolumeReclaimPolicy,HANDLE:.spec.csi.volumeHandle,NODE:.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]")
	fmt.Print(out)
	return nil
}
