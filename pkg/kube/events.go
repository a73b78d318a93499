package kube

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/go-logr/logr"

	"github.com/keeplog/keeplog/pkg/store"
)

// Events sends Kubernetes Events about pods. A nil *Events sends nothing (no API access), so callers need no checks.
type Events struct {
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
	log         logr.Logger
}

// NewEvents starts an event broadcaster that writes to the API as component on host (the node). Call Shutdown at
// the end to flush. Each Event is also logged to log at V(2).
func NewEvents(client typedcorev1.EventsGetter, component, host string, log logr.Logger) *Events {
	b := record.NewBroadcaster()
	b.StartStructuredLogging(4)
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.Events("")})
	rec := b.NewRecorder(scheme(), corev1.EventSource{Component: component, Host: host})
	return &Events{broadcaster: b, recorder: rec, log: log}
}

// PodEvent records an event on the pod (which may be deleted already: the event still names it).
func (e *Events) PodEvent(pod store.PodRef, eventType, reason, message string) {
	if e == nil {
		return
	}
	e.log.V(2).Info("Event", "pod", pod.String(), "type", eventType, "reason", reason, "message", message)
	e.recorder.Event(PodObject(pod), eventType, reason, message)
}

// Shutdown stops the broadcaster after sending what is queued.
func (e *Events) Shutdown() {
	if e != nil {
		e.broadcaster.Shutdown()
	}
}

// PodObject is the object reference of a pod, for events.
func PodObject(pod store.PodRef) *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name,
		UID: types.UID(pod.UID)}
}

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = corev1.AddToScheme(s)
	return s
}
