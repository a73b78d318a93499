package podinfo

import (
	appsv1client "k8s.io/client-go/kubernetes/typed/apps/v1"
	batchv1client "k8s.io/client-go/kubernetes/typed/batch/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// API is the part of the Kubernetes API podinfo reads and writes: the pod and its PV (core/v1) and the pod's owner
// chain (apps/v1, batch/v1 and core/v1 replication controllers). keeplog's kube.Clients is one, and so is a fake
// clientset in tests; asking for these groups only keeps client-go's full clientset out of the binary.
type API interface {
	CoreV1() corev1client.CoreV1Interface
	AppsV1() appsv1client.AppsV1Interface
	BatchV1() batchv1client.BatchV1Interface
}
