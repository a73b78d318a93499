package podinfo

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// API is the part of the Kubernetes API podinfo reads and writes: the pod and its PV (core/v1) and the pod's owner
// chain (apps/v1, batch/v1 and core/v1 replication controllers). keeplog builds it on kube.Clients; tests on a fake
// clientset.
type API interface {
	// GetPod reads a pod.
	GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
	// GetPV reads a PersistentVolume.
	GetPV(ctx context.Context, name string) (*corev1.PersistentVolume, error)
	// PatchPV applies a JSON merge patch to a PersistentVolume.
	PatchPV(ctx context.Context, name string, mergePatch []byte) error
	// Owner reads the object of an owner reference by API group ("" for core), kind, namespace and name; false
	// for a kind podinfo does not follow (custom resources).
	Owner(ctx context.Context, group, kind, namespace, name string) (metav1.Object, bool, error)
}
