// Command demo runs keeplog's main job on a real single-node Kubernetes: a pod with a keeplog volume from the
// StorageClass writes its logs and a heap dump, is deleted, its directory stays on the node and the dump arrives on
// an SFTP server (a real OpenSSH sshd on 127.0.0.1). It prints what a user looks at (the directory tree on the node,
// the archive, the PV) and stops everything it started.
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
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/pkg/store"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx)
	stop() // before os.Exit, which runs no deferred call
	if err != nil {
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
	tb := &cleanups{}
	defer func() {
		step("Stopping everything the demo started")
		if terr := env.Teardown(context.Background()); terr != nil && err == nil {
			err = terr
		}
		tb.run()
		if err == nil && tb.failed != nil {
			err = tb.failed
		}
	}()
	defer tb.recoverFatal(&err)

	step("Starting an SFTP server (OpenSSH on 127.0.0.1) and restarting keeplog to archive heap dumps to it")
	sftp := framework.StartSFTP(tb)
	if err := env.KillKeeplog(); err != nil {
		return err
	}
	if err := env.StartKeeplog(ctx, sftp.Flag(), "--archive-quiet-period=5s"); err != nil {
		return err
	}
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
		`dd if=/dev/urandom of=/logs/app/java_pid1.hprof bs=1024 count=2048 2>/dev/null; ` +
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

	ref := store.PodRef{Namespace: ns, Name: name, UID: string(running.UID)}
	archived := sftp.Archived(tb, ref, "app/java_pid1.hprof")
	step("The heap dump is on the SFTP server, under <namespace>/<pod>/<pod-uid>/, with its manifest")
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		_, err := os.Stat(archived + ".manifest.json")
		return err == nil, nil
	}); err != nil {
		return fmt.Errorf("the dump did not reach the SFTP server: %w", err)
	}
	fmt.Print(framework.Tree(sftp.Server.DataDir))
	manifest, err := os.ReadFile(archived + ".manifest.json")
	if err != nil {
		return err
	}
	fmt.Printf("\n%s.manifest.json:\n%s", archived, manifest)
	step("The PersistentVolume is Released and kept (reclaimPolicy Retain)")
	out, _ = env.Lab.Kubectl(ctx, "get", "pv", "-o", "custom-columns=NAME:.metadata.name,STATUS:.status.phase,RECLAIM:.spec.persistentVolumeReclaimPolicy,HANDLE:.spec.csi.volumeHandle,NODE:.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]")
	fmt.Print(out)
	return nil
}

// cleanups gives the test SFTP server what it needs of a test (sshdtest.TB): cleanups run at the end of the demo, and
// a fatal error ends the demo with that error.
type cleanups struct {
	fns    []func()
	failed error
}

type fatal struct{ err error }

func (c *cleanups) Helper()                   {}
func (c *cleanups) Cleanup(f func())          { c.fns = append(c.fns, f) }
func (c *cleanups) Fatalf(f string, a ...any) { panic(fatal{fmt.Errorf(f, a...)}) }
func (c *cleanups) Errorf(f string, a ...any) {
	err := fmt.Errorf(f, a...)
	fmt.Fprintln(os.Stderr, "demo:", err)
	if c.failed == nil {
		c.failed = err
	}
}

// recoverFatal turns a Fatalf into run's error.
func (c *cleanups) recoverFatal(err *error) {
	if r := recover(); r != nil {
		f, ok := r.(fatal)
		if !ok {
			panic(r)
		}
		*err = f.err
	}
}

// run runs the cleanups, last registered first.
func (c *cleanups) run() {
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i]()
	}
	c.fns = nil
}
