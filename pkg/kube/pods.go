package kube

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/keeplog/keeplog/pkg/store"
)

// NodePods is an informer cache of the pods bound to one node.
type NodePods struct {
	informer cache.SharedIndexInformer
	lister   listersv1.PodLister
}

// PodListWatcher lists and watches pods (Clients.Pods of all namespaces, "").
type PodListWatcher interface {
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// NewNodePods watches, through pods, the pods whose spec.nodeName is node. Add handlers with OnChange before Run.
//
// The informer is built for pods only, as client-go's NewFilteredPodInformer builds it (same ListWatch, namespace
// index and resync), not through the shared informer factory, which would link informers and clients of every API
// group.
func NewNodePods(pods PodListWatcher, node string, resync time.Duration) *NodePods {
	selector := fields.OneTermEqualSelector("spec.nodeName", node).String()
	onNode := func(o metav1.ListOptions) metav1.ListOptions { o.FieldSelector = selector; return o }
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return pods.List(ctx, onNode(o))
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return pods.Watch(ctx, onNode(o))
		},
	}
	informer := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, resync,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	return &NodePods{informer: informer, lister: listersv1.NewPodLister(informer.GetIndexer())}
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
	n.informer.Run(ctx.Done())
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
