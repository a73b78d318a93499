package kube

import (
	"net/url"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/gentype"
	"k8s.io/client-go/rest"
)

// The resource clients keeplog uses, as client-gen makes them (resource name, protobuf preferred for built-in
// types). A namespaced one takes the namespace ("" for all namespaces in List and Watch).

// Pods is the pods client of namespace.
func (c *Clients) Pods(namespace string) *gentype.ClientWithList[*corev1.Pod, *corev1.PodList] {
	return gentype.NewClientWithList("pods", rest.Interface(c.core), c.codecs.parameters, namespace,
		func() *corev1.Pod { return &corev1.Pod{} }, func() *corev1.PodList { return &corev1.PodList{} },
		gentype.PrefersProtobuf[*corev1.Pod]())
}

// PersistentVolumes is the PV client.
func (c *Clients) PersistentVolumes() *gentype.ClientWithList[*corev1.PersistentVolume, *corev1.PersistentVolumeList] {
	return gentype.NewClientWithList("persistentvolumes", rest.Interface(c.core), c.codecs.parameters, "",
		func() *corev1.PersistentVolume { return &corev1.PersistentVolume{} },
		func() *corev1.PersistentVolumeList { return &corev1.PersistentVolumeList{} },
		gentype.PrefersProtobuf[*corev1.PersistentVolume]())
}

// Nodes is the node client.
func (c *Clients) Nodes() *gentype.Client[*corev1.Node] {
	return gentype.NewClient("nodes", rest.Interface(c.core), c.codecs.parameters, "",
		func() *corev1.Node { return &corev1.Node{} }, gentype.PrefersProtobuf[*corev1.Node]())
}

// Namespaces is the namespace client.
func (c *Clients) Namespaces() *gentype.Client[*corev1.Namespace] {
	return gentype.NewClient("namespaces", rest.Interface(c.core), c.codecs.parameters, "",
		func() *corev1.Namespace { return &corev1.Namespace{} }, gentype.PrefersProtobuf[*corev1.Namespace]())
}

// DaemonSets is the DaemonSet client of namespace.
func (c *Clients) DaemonSets(namespace string) *gentype.Client[*appsv1.DaemonSet] {
	return gentype.NewClient("daemonsets", rest.Interface(c.apps), c.codecs.parameters, namespace,
		func() *appsv1.DaemonSet { return &appsv1.DaemonSet{} }, gentype.PrefersProtobuf[*appsv1.DaemonSet]())
}

// Leases is the Lease client of namespace.
func (c *Clients) Leases(namespace string) *gentype.Client[*coordinationv1.Lease] {
	return gentype.NewClient("leases", rest.Interface(c.coord), c.codecs.parameters, namespace,
		func() *coordinationv1.Lease { return &coordinationv1.Lease{} },
		gentype.PrefersProtobuf[*coordinationv1.Lease]())
}

// TokenReviews is the TokenReview client (Create).
func (c *Clients) TokenReviews() *gentype.Client[*authnv1.TokenReview] {
	return gentype.NewClient("tokenreviews", rest.Interface(c.authn), c.codecs.parameters, "",
		func() *authnv1.TokenReview { return &authnv1.TokenReview{} },
		gentype.PrefersProtobuf[*authnv1.TokenReview]())
}

// SubjectAccessReviews is the SubjectAccessReview client (Create).
func (c *Clients) SubjectAccessReviews() *gentype.Client[*authzv1.SubjectAccessReview] {
	return gentype.NewClient("subjectaccessreviews", rest.Interface(c.authz), c.codecs.parameters, "",
		func() *authzv1.SubjectAccessReview { return &authzv1.SubjectAccessReview{} },
		gentype.PrefersProtobuf[*authzv1.SubjectAccessReview]())
}

// PodExecURL is the URL of a pods/exec request (the remotecommand executors dial it).
func (c *Clients) PodExecURL(namespace, pod string, opts *corev1.PodExecOptions) *url.URL {
	return c.core.Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("exec").
		VersionedParams(opts, c.codecs.parameters).URL()
}
