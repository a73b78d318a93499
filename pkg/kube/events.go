package kube

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
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

// NewEvents starts an event broadcaster that writes to the API through c as component on host (the node). Call
// Shutdown at the end to flush. Each Event is also logged to log at V(2).
func NewEvents(c *Clients, component, host string, log logr.Logger) *Events {
	b := record.NewBroadcaster()
	b.StartStructuredLogging(4)
	b.StartRecordingToSink(&eventSink{core: c.core})
	rec := b.NewRecorder(c.codecs.scheme, corev1.EventSource{Component: component, Host: host})
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

// eventSink writes the broadcaster's Events in their own namespace, as client-go's typed EventSinkImpl does
// (create, update of a series, strategic-merge patch of an aggregated one).
type eventSink struct{ core rest.Interface }

func (s *eventSink) Create(ev *corev1.Event) (*corev1.Event, error) {
	return s.do(s.core.Post().NamespaceIfScoped(ev.Namespace, ev.Namespace != "").Resource("events").Body(ev))
}

func (s *eventSink) Update(ev *corev1.Event) (*corev1.Event, error) {
	return s.do(s.core.Put().NamespaceIfScoped(ev.Namespace, ev.Namespace != "").Resource("events").Name(ev.Name).Body(ev))
}

func (s *eventSink) Patch(ev *corev1.Event, data []byte) (*corev1.Event, error) {
	return s.do(s.core.Patch(types.StrategicMergePatchType).NamespaceIfScoped(ev.Namespace, ev.Namespace != "").
		Resource("events").Name(ev.Name).Body(data))
}

func (s *eventSink) do(req *rest.Request) (*corev1.Event, error) {
	out := &corev1.Event{}
	return out, req.Do(context.Background()).Into(out)
}
