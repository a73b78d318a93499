//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/internal/loopfs"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/test/e2e/framework"
)

const (
	blockClass = "keeplog-block"
	rootMiB    = 256
)

// fillOnce appends 512 KiB at a time to the container's own directory until a write fails (the block), then says
// so and keeps running: the pod writes past its 4 MiB request and stops only when keeplog stops it.
const fillOnce = `until ! head -c 524288 /dev/zero >> /logs/app/big.log; do sleep 0.2; done; echo "write refused"; sleep 100000`

// fill8MiB writes 8 MiB once and then keeps running.
const fill8MiB = `head -c 8388608 /dev/zero > /logs/app/big.log; echo done; sleep 100000`

// TestUsage runs the sizes, limits and capacity scenarios with keeplog's root on a small loop-mounted ext4.
func TestUsage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	ctx := context.Background()
	env, err := framework.Setup(ctx, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	loop, err := loopfs.New(rootMiB)
	if err != nil {
		if terr := env.Teardown(context.Background()); terr != nil {
			t.Error(terr)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Teardown(context.Background()); err != nil {
			t.Error(err)
		}
		if err := loop.Remove(); err != nil {
			t.Error(err)
		}
	})
	if err := env.RestartKeeplogWithRoot(ctx, filepath.Join(loop.Dir, "root"), "--usage-update-interval=500ms", "--usage-block-grace=3s"); err != nil {
		t.Fatal(err)
	}
	retain, wffc := corev1.PersistentVolumeReclaimRetain, storagev1.VolumeBindingWaitForFirstConsumer
	_, err = env.Client.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta:  metav1.ObjectMeta{Name: blockClass},
		Provisioner: framework.DriverName, Parameters: map[string]string{"limitAction": "block"},
		ReclaimPolicy: &retain, VolumeBindingMode: &wffc,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustNamespace(ctx, t, env, "usage")

	t.Run("BlockStopsThePodPastItsRequestWhileOthersWriteOn", func(t *testing.T) { blockAndWarn(ctx, t, env) })
	t.Run("CapacityKeepsATooBigPodPending", func(t *testing.T) { capacityPending(ctx, t, env) })
	t.Run("KubeletReportsTheVolumesOwnUsage", func(t *testing.T) { kubeletStats(ctx, t, env) })
}

func sizedClaim(class, size string) *corev1.PersistentVolumeClaimTemplate {
	return &corev1.PersistentVolumeClaimTemplate{Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		StorageClassName: &class,
		Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
	}}
}

func sizedPod(env *framework.Env, name, class, size, script string) *corev1.Pod {
	vol := corev1.Volume{Name: "logs", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{
		VolumeClaimTemplate: sizedClaim(class, size)}}}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "usage"}, Spec: env.PodSpec(script, vol)}
}

func runSizedPod(ctx context.Context, t *testing.T, env *framework.Env, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	if _, err := env.Client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := env.WaitPodRunning(ctx, p.Namespace, p.Name)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// waitUsageEvent waits for an Event of reason on the pod and returns its message.
func waitUsageEvent(ctx context.Context, t *testing.T, env *framework.Env, pod, reason string, timeout time.Duration) string {
	t.Helper()
	var msg string
	var seen []string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		evs, err := env.PodEvents(ctx, "usage", pod)
		if err != nil {
			return false, nil
		}
		seen = seen[:0]
		for _, e := range evs {
			seen = append(seen, e.Reason)
			if e.Reason == reason {
				msg = e.Message
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s Event on pod %s within %s (events: %v)\nkeeplog log:\n%s", reason, pod, timeout, seen, env.KeeplogLog(30))
	}
	return msg
}

// blockAndWarn: two pods write past their 4 MiB request. The one on a limitAction block class gets Events and its
// writes from inside the container fail within seconds; the one on the default (warn) class gets an Event and
// writes on. When the excess is deleted on the node, the blocked pod can write again.
func blockAndWarn(ctx context.Context, t *testing.T, env *framework.Env) {
	runSizedPod(ctx, t, env, sizedPod(env, "warned", framework.StorageClass, "4Mi", fill8MiB))
	start := time.Now()
	blocked := runSizedPod(ctx, t, env, sizedPod(env, "blocked", blockClass, "4Mi", fillOnce))

	msg := waitUsageEvent(ctx, t, env, "blocked", api.ReasonVolumeOverLimit, 60*time.Second)
	t.Logf("blocked pod: %s", msg)
	waitUsageEvent(ctx, t, env, "blocked", api.ReasonVolumeBlocked, 30*time.Second)
	// The pod's own loop reports the refused write; a write from outside its loop fails too.
	var refusedAfter time.Duration
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		out, _ := env.Lab.Kubectl(ctx, "logs", "-n", "usage", "blocked")
		refusedAfter = time.Since(start)
		return strings.Contains(out, "write refused"), nil
	})
	if err != nil {
		t.Fatalf("the blocked pod's writes were never refused\nkeeplog log:\n%s", env.KeeplogLog(30))
	}
	t.Logf("the blocked pod's write was refused %s after it started", refusedAfter.Round(time.Second))
	if out, err := env.Exec(ctx, "usage", "blocked", "echo probe >> /logs/app/probe.log"); err == nil {
		t.Fatalf("a write in the blocked pod succeeded: %s", out)
	} else if !strings.Contains(err.Error(), "not permitted") {
		t.Fatalf("the blocked write failed with %v, want Operation not permitted", err)
	}
	big := filepath.Join(env.PodDir(blocked), "app", "big.log")
	fi, err := os.Stat(big)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the blocked pod's file reached %d bytes (request 4 MiB)", fi.Size())
	if fi.Size() > 32<<20 {
		t.Errorf("the blocked pod wrote %d bytes: the block came far too late", fi.Size())
	}

	// warn: an Event, and the pod writes on.
	msg = waitUsageEvent(ctx, t, env, "warned", api.ReasonVolumeOverLimit, 60*time.Second)
	if !strings.Contains(msg, "warn") {
		t.Errorf("warn Event message %q does not say limitAction warn", msg)
	}
	if out, err := env.Exec(ctx, "usage", "warned", "echo still >> /logs/app/more.log && cat /logs/app/more.log"); err != nil || !strings.Contains(out, "still") {
		t.Fatalf("the warned pod could not write on: %v: %s", err, out)
	}

	// The operator deletes the excess on the node: clears the attribute of the file and its directory only, so the
	// rest of the pod directory stays blocked until keeplog sees the volume back under its limit.
	if out, err := exec.Command("chattr", "-i", filepath.Dir(big), big).CombinedOutput(); err != nil {
		t.Fatalf("chattr: %v: %s", err, out)
	}
	if err := os.Remove(big); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := env.Exec(ctx, "usage", "blocked", "echo again >> /logs/again.log")
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("the pod could not write again after the excess was deleted\nkeeplog log:\n%s", env.KeeplogLog(30))
	}
	waitUsageEvent(ctx, t, env, "blocked", api.ReasonVolumeBackUnderLimit, 30*time.Second)
}

// capacityPending: CSIStorageCapacity objects appear for the node; a pod whose claim is bigger than the node's free
// capacity stays Pending with the scheduler's reason, and one that fits runs.
func capacityPending(ctx context.Context, t *testing.T, env *framework.Env) {
	var caps []storagev1.CSIStorageCapacity
	// After the restart on the small root, csi-provisioner's next poll publishes its free space.
	err := wait.PollUntilContextTimeout(ctx, time.Second, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := env.Client.StorageV1().CSIStorageCapacities("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		caps = list.Items
		classes := map[string]bool{}
		for _, c := range caps {
			if c.Capacity != nil && c.Capacity.Value() < rootMiB<<20 && c.NodeTopology != nil &&
				c.NodeTopology.MatchLabels["topology.keeplog.csi.io/node"] == env.Lab.NodeName() {
				classes[c.StorageClassName] = true
			}
		}
		return classes[framework.StorageClass] && classes[blockClass], nil
	})
	if err != nil {
		t.Fatalf("no CSIStorageCapacity below %d MiB for both classes on node %s: %s", rootMiB, env.Lab.NodeName(), describeCaps(caps))
	}
	t.Logf("capacities: %s", describeCaps(caps))

	tooBig := sizedPod(env, "too-big", framework.StorageClass, "1Gi", writer)
	if _, err := env.Client.CoreV1().Pods("usage").Create(ctx, tooBig, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var reason string
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := env.Client.CoreV1().Pods("usage").Get(ctx, "too-big", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				reason = c.Reason + ": " + c.Message
				return strings.Contains(c.Message, "did not have enough free storage"), nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("the 1Gi pod is not unschedulable for lack of storage (last condition %q)", reason)
	}
	t.Logf("too-big: %s", reason)
	runSizedPod(ctx, t, env, sizedPod(env, "fits", framework.StorageClass, "16Mi", writer))
	if p, _ := env.Client.CoreV1().Pods("usage").Get(ctx, "too-big", metav1.GetOptions{}); p.Status.Phase != corev1.PodPending {
		t.Fatalf("the 1Gi pod is %s, want Pending", p.Status.Phase)
	}
	if err := env.DeletePodAndWait(ctx, "usage", "too-big"); err != nil {
		t.Fatal(err)
	}
}

func describeCaps(caps []storagev1.CSIStorageCapacity) string {
	var parts []string
	for _, c := range caps {
		parts = append(parts, fmt.Sprintf("%s %v %s", c.StorageClassName, c.NodeTopology.MatchLabels, c.Capacity))
	}
	return strings.Join(parts, "; ")
}

// kubeletStats: kubelet's summary shows the volume's own usage and its requested size as capacity, not the
// filesystem's (which also holds the other pods' files).
func kubeletStats(ctx context.Context, t *testing.T, env *framework.Env) {
	var last string
	// kubelet measures each pod's volumes about once a minute.
	err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 150*time.Second, true, func(ctx context.Context) (bool, error) {
		vs, err := env.KubeletVolumeStats(ctx, "usage", "warned", "logs")
		if err != nil || vs == nil || vs.UsedBytes == nil || vs.CapacityBytes == nil {
			last = fmt.Sprintf("%v %+v", err, vs)
			return false, nil
		}
		last = fmt.Sprintf("used %d capacity %d", *vs.UsedBytes, *vs.CapacityBytes)
		return *vs.UsedBytes >= 8<<20, nil
	})
	if err != nil {
		t.Fatalf("kubelet has no stats with the written 8 MiB for the warned pod's volume: %s", last)
	}
	vs, _ := env.KubeletVolumeStats(ctx, "usage", "warned", "logs")
	t.Logf("kubelet: warned pod's volume %s", last)
	if *vs.CapacityBytes != 4<<20 {
		t.Errorf("capacity %d, want the requested 4 MiB (not the filesystem's size)", *vs.CapacityBytes)
	}
	// The filesystem also holds the blocked pod's files and the other pods': the volume's own usage is below that.
	var st syscall.Statfs_t
	if err := syscall.Statfs(env.Root, &st); err != nil {
		t.Fatal(err)
	}
	if fsUsed := (st.Blocks - st.Bfree) * uint64(st.Bsize); *vs.UsedBytes >= fsUsed || *vs.UsedBytes > 12<<20 {
		t.Errorf("used %d bytes, want the volume's own ~8 MiB (the filesystem uses %d)", *vs.UsedBytes, fsUsed)
	}
}
