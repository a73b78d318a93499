package podinfo

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

// fakeAPI is a fake clientset as podinfo's API (keeplog's is kube.Clients, tested against an API server in
// pkg/kube and the e2e).
type fakeAPI struct{ *fake.Clientset }

func (f fakeAPI) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	return f.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (f fakeAPI) GetPV(ctx context.Context, name string) (*corev1.PersistentVolume, error) {
	return f.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
}

func (f fakeAPI) PatchPV(ctx context.Context, name string, patch []byte) error {
	_, err := f.CoreV1().PersistentVolumes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

func (f fakeAPI) Owner(ctx context.Context, group, kind, ns, name string) (metav1.Object, bool, error) {
	opts := metav1.GetOptions{}
	var (
		obj metav1.Object
		err error
	)
	switch group + "/" + kind {
	case "apps/ReplicaSet":
		obj, err = f.AppsV1().ReplicaSets(ns).Get(ctx, name, opts)
	case "apps/Deployment":
		obj, err = f.AppsV1().Deployments(ns).Get(ctx, name, opts)
	case "apps/DaemonSet":
		obj, err = f.AppsV1().DaemonSets(ns).Get(ctx, name, opts)
	default:
		return nil, false, nil
	}
	return obj, true, err
}
