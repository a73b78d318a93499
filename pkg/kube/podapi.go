package kube

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/gentype"
	"k8s.io/client-go/rest"
)

// Owner reads the object an owner reference names, for the built-in workload kinds a pod's owner chain goes
// through: apps/v1 ReplicaSet, Deployment, StatefulSet, DaemonSet, batch/v1 Job, CronJob and core/v1
// ReplicationController, by group ("" for core) and kind. Another kind answers (nil, false, nil): its owners are
// not followed.
func (c *Clients) Owner(ctx context.Context, group, kind, namespace, name string) (metav1.Object, bool, error) {
	p := c.codecs.parameters
	var obj metav1.Object
	var err error
	switch group + "/" + kind {
	case "apps/ReplicaSet":
		obj, err = get(ctx, c.apps, p, "replicasets", namespace, name, func() *appsv1.ReplicaSet { return &appsv1.ReplicaSet{} })
	case "apps/Deployment":
		obj, err = get(ctx, c.apps, p, "deployments", namespace, name, func() *appsv1.Deployment { return &appsv1.Deployment{} })
	case "apps/StatefulSet":
		obj, err = get(ctx, c.apps, p, "statefulsets", namespace, name, func() *appsv1.StatefulSet { return &appsv1.StatefulSet{} })
	case "apps/DaemonSet":
		obj, err = get(ctx, c.apps, p, "daemonsets", namespace, name, func() *appsv1.DaemonSet { return &appsv1.DaemonSet{} })
	case "batch/Job":
		obj, err = get(ctx, c.batch, p, "jobs", namespace, name, func() *batchv1.Job { return &batchv1.Job{} })
	case "batch/CronJob":
		obj, err = get(ctx, c.batch, p, "cronjobs", namespace, name, func() *batchv1.CronJob { return &batchv1.CronJob{} })
	case "/ReplicationController":
		obj, err = get(ctx, c.core, p, "replicationcontrollers", namespace, name,
			func() *corev1.ReplicationController { return &corev1.ReplicationController{} })
	default:
		return nil, false, nil
	}
	return obj, true, err
}

// apiObject is what a resource client reads: a pointer to one of k8s.io/api's types.
type apiObject interface {
	runtime.Object
	metav1.Object
}

// get reads one object of resource with a client-gen style client (protobuf preferred, as for built-in types).
func get[T apiObject](ctx context.Context, rc rest.Interface, params runtime.ParameterCodec, resource, namespace, name string,
	empty func() T) (metav1.Object, error) {
	obj, err := gentype.NewClient(resource, rc, params, namespace, empty, gentype.PrefersProtobuf[T]()).
		Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return obj, nil
}

// GetPod reads a pod (podinfo's API).
func (c *Clients) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	return c.Pods(namespace).Get(ctx, name, metav1.GetOptions{})
}

// GetPV reads a PersistentVolume (podinfo's API).
func (c *Clients) GetPV(ctx context.Context, name string) (*corev1.PersistentVolume, error) {
	return c.PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
}

// PatchPV applies a JSON merge patch to a PersistentVolume (podinfo's API).
func (c *Clients) PatchPV(ctx context.Context, name string, mergePatch []byte) error {
	_, err := c.PersistentVolumes().Patch(ctx, name, types.MergePatchType, mergePatch, metav1.PatchOptions{})
	return err
}

// PatchPod applies a JSON merge patch to a pod (the dump webhook's API).
func (c *Clients) PatchPod(ctx context.Context, namespace, name string, mergePatch []byte) error {
	_, err := c.Pods(namespace).Patch(ctx, name, types.MergePatchType, mergePatch, metav1.PatchOptions{})
	return err
}
