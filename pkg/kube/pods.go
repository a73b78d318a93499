// Package kube is the small API surface keeplog's node plugin needs beyond single reads: a cache of the pods on
// its node (their annotations drive policy and heap dumps) and Events on pods.
package kube

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/keeplog/keeplog/pkg/store"
)

// NodePods is an informer cache of the pods bound to one node.
type NodePods struct {
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	lister   listersv1.PodLister
}

// NewNodePods watches the pods whose spec.nodeName is node. Add handlers with OnChange before Run.
func NewNodePods(client kubernetes.Interface, node string, resync time.Duration) *NodePods {
	f := informers.NewSharedInformerFactoryWithOptions(client, resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
		}))
	pods := f.Core().V1().Pods()
	return &NodePods{factory: f, informer: pods.Informer(), lister: pods.Lister()}
}

// OnChange calls fn for every pod added or updated (and once per pod at each resync).
func (n *NodePods) OnChange(fn func(*corev1.Pod)) error {
	_, err := n.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if p, ok := obj.(*corev1.Pod); ok {
				fn(p)
			}
		},
		UpdateFunc: func(_, obj any) {
			if p, ok := obj.(*corev1.Pod); ok {
				fn(p)
			}
		},
	})
	return err
}

// Run starts the informer and blocks until ctx ends.
func (n *NodePods) Run(ctx context.Context) {
	n.factory.Start(ctx.Done())
	<-ctx.Done()
	n.factory.Shutdown()
}

// WaitSynced waits until the cache holds the node's pods (or ctx ends).
func (n *NodePods) WaitSynced(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), n.informer.HasSynced)
}

// Get returns the cached pod of ref, only when its UID matches.
func (n *NodePods) Get(ref store.PodRef) (*corev1.Pod, bool) {
	p, err := n.lister.Pods(ref.Namespace).Get(ref.Name)
	if err != nil || p.UID != types.UID(ref.UID) {
		return nil, false
	}
	return p, true
}

// Annotations returns the cached pod's annotations (the policy.LiveAnnotations shape).
func (n *NodePods) Annotations(ref store.PodRef) (map[string]string, bool) {
	p, ok := n.Get(ref)
	if !ok {
		return nil, false
	}
	return p.Annotations, true
}
