package framework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// CreateKeeplogStorageClass makes a StorageClass of the driver (reclaim Retain, WaitForFirstConsumer) with the given
// parameters, replacing one of the same name.
func (e *Env) CreateKeeplogStorageClass(ctx context.Context, name string, params map[string]string) error {
	retain := corev1.PersistentVolumeReclaimRetain
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: DriverName,
		ReclaimPolicy: &retain, VolumeBindingMode: &wffc, Parameters: params}
	err := e.Client.StorageV1().StorageClasses().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	_, err = e.Client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{})
	return err
}

// PodDirRecord reads keeplog's record of a pod directory (its base name): which volume owns it, and its publish and
// unpublish times.
func (e *Env) PodDirRecord(dir string) (volumeID string, rec *store.PodDir, err error) {
	vols, err := os.ReadDir(filepath.Join(e.Root, api.KeeplogDir, "volumes"))
	if err != nil {
		return "", nil, err
	}
	for _, v := range vols {
		data, err := os.ReadFile(filepath.Join(e.Root, api.KeeplogDir, "volumes", v.Name(), "pods", dir+".json"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		rec = &store.PodDir{}
		if err := json.Unmarshal(data, rec); err != nil {
			return "", nil, fmt.Errorf("record of %s in volume %s: %w", dir, v.Name(), err)
		}
		return v.Name(), rec, nil
	}
	return "", nil, fmt.Errorf("no volume record owns %s", dir)
}

// VolumeRecordExists tells whether keeplog still has records of a volume.
func (e *Env) VolumeRecordExists(volumeID string) bool {
	_, err := os.Lstat(filepath.Join(e.Root, api.KeeplogDir, "volumes", volumeID))
	return err == nil
}

// WaitPathGone polls (every 250 ms) until path no longer exists and returns when it was first seen gone.
func WaitPathGone(ctx context.Context, path string, timeout time.Duration) (time.Time, error) {
	var gone time.Time
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			gone = time.Now()
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return gone, fmt.Errorf("%s still exists after %s: %w", path, timeout, err)
	}
	return gone, nil
}

// WaitPVGone waits until the PV no longer exists.
func (e *Env) WaitPVGone(ctx context.Context, name string, timeout time.Duration) error {
	var last *corev1.PersistentVolume
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		pv, err := e.Client.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err == nil {
			last = pv
		}
		return false, nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("PV %s still exists after %s (phase %s, reclaim policy %s, finalizers %v): %w", name, timeout,
			last.Status.Phase, last.Spec.PersistentVolumeReclaimPolicy, last.Finalizers, err)
	}
	return err
}

// GCEventsOf lists the Events about a pod (by UID, so a deleted pod's Events are found too) with the given reason.
func (e *Env) GCEventsOf(ctx context.Context, pod *corev1.Pod, reason string) ([]corev1.Event, error) {
	sel := fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.uid", string(pod.UID)),
		fields.OneTermEqualSelector("reason", reason))
	list, err := e.Client.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// NodePV is a keeplog PV (not yet created) pinned to node by its node affinity and volume handle, with
// csi-provisioner's finalizer, as csi-provisioner makes them: when node names no Node object, it is what the GC
// leader's vanished-node rule looks for.
func NodePV(name, node, storageClass string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: []string{"external-provisioner.volume.kubernetes.io/finalizer"}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              storageClass,
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: DriverName, VolumeHandle: "v1:" + node + ":" + name}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: api.TopologyKey, Operator: corev1.NodeSelectorOpIn,
					Values: []string{node}}}}}}},
		},
	}
}
