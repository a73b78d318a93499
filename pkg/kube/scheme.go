package kube

import (
	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
)

// codecs are the scheme keeplog decodes API answers with and its codec factory and parameter codec, built once per
// Clients: only the six groups keeplog talks to (client-go's kubernetes/scheme registers all of k8s.io/api, whose
// code and registration this keeps out of bin/keeplog; test/arch checks it).
type codecs struct {
	scheme     *runtime.Scheme
	factory    serializer.CodecFactory
	parameters runtime.ParameterCodec
}

// newCodecs registers the groups as client-go's kubernetes/scheme does (meta/v1's options under the unversioned
// v1, then each group's types).
func newCodecs() (*codecs, error) {
	s := runtime.NewScheme()
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme,
		coordinationv1.AddToScheme, authnv1.AddToScheme, authzv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return &codecs{scheme: s, factory: serializer.NewCodecFactory(s), parameters: runtime.NewParameterCodec(s)}, nil
}
