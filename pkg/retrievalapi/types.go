package retrievalapi

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keeplog/keeplog/pkg/retrieval/wire"
)

// The API's group, version and resource.
const (
	Group    = "keeplog.csi.io"
	Version  = "v1alpha1"
	Resource = "retainedpods"
	Kind     = "RetainedPod"
	// BasePath is the group version's path on the API server.
	BasePath = "/apis/" + Group + "/" + Version
)

// RetainedPod is one pod directory on a node: metadata.name is "<pod>.<uid>" (a pod name can come back with another
// UID), metadata.namespace the pod's.
type RetainedPod struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Status            RetainedPodStatus `json:"status"`
}

// RetainedPodStatus is what keeplog's records say about the directory.
type RetainedPodStatus struct {
	PodName        string            `json:"podName"`
	PodUID         string            `json:"podUID"`
	Node           string            `json:"node"`
	Volume         string            `json:"volume"`
	Directory      string            `json:"directory"`
	FirstPublished metav1.Time       `json:"firstPublished"`
	LastPublished  metav1.Time       `json:"lastPublished"`
	UnpublishedAt  *metav1.Time      `json:"unpublishedAt,omitempty"` // nil while the pod runs
	Annotations    map[string]string `json:"annotations,omitempty"`
	// ExpiresAt is when its retention ends (nil while the pod runs); it is deleted after that once archived.
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// Archive counts its matching files by archive state; nil without an archive status file.
	Archive *wire.ArchiveState `json:"archive,omitempty"`
}

// RetainedPodList is a list answer.
type RetainedPodList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`
	Items           []RetainedPod `json:"items"`
	// Unreachable names the nodes that did not answer: their pods are missing from Items.
	Unreachable []string `json:"unreachable,omitempty"`
}

// RetainedPodFiles is the answer of the files subresource.
type RetainedPodFiles struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Files             []wire.File       `json:"files"`
	Skipped           map[string]string `json:"skipped,omitempty"`
	NotEntered        []string          `json:"notEntered,omitempty"`
}

// ObjectName is a retained pod's object name.
func ObjectName(pod, uid string) string { return pod + "." + uid }

func typeMeta(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: Group + "/" + Version, Kind: kind}
}

func fromWire(p wire.Pod) RetainedPod {
	rp := RetainedPod{TypeMeta: typeMeta(Kind),
		ObjectMeta: metav1.ObjectMeta{Name: ObjectName(p.Name, p.UID), Namespace: p.Namespace,
			CreationTimestamp: metav1.NewTime(p.FirstPublished)},
		Status: RetainedPodStatus{PodName: p.Name, PodUID: p.UID, Node: p.Node, Volume: p.Volume, Directory: p.Dir,
			FirstPublished: metav1.NewTime(p.FirstPublished), LastPublished: metav1.NewTime(p.LastPublished),
			Annotations: p.Annotations, Archive: p.Archive}}
	if p.UnpublishedAt != nil {
		t := metav1.NewTime(*p.UnpublishedAt)
		rp.Status.UnpublishedAt = &t
	}
	if p.ExpiresAt != nil {
		t := metav1.NewTime(*p.ExpiresAt)
		rp.Status.ExpiresAt = &t
	}
	return rp
}

// discovery is the group version's APIResourceList.
func discovery() metav1.APIResourceList {
	verbs := metav1.Verbs{"get", "list"}
	return metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: Group + "/" + Version,
		APIResources: []metav1.APIResource{
			{Name: Resource, SingularName: "retainedpod", Namespaced: true, Kind: Kind, Verbs: verbs, ShortNames: []string{"rp"}},
			{Name: Resource + "/files", Namespaced: true, Kind: "RetainedPodFiles", Verbs: metav1.Verbs{"get"}},
			{Name: Resource + "/file", Namespaced: true, Kind: "", Verbs: metav1.Verbs{"get"}},
		}}
}

func group() metav1.APIGroup {
	gv := metav1.GroupVersionForDiscovery{GroupVersion: Group + "/" + Version, Version: Version}
	return metav1.APIGroup{TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}, Name: Group,
		Versions: []metav1.GroupVersionForDiscovery{gv}, PreferredVersion: gv}
}
