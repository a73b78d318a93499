package podinfo

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxOwnerDepth bounds the owner chain walk (Pod → ReplicaSet → Deployment is 2; a cycle or a deep custom chain stops
// here).
const maxOwnerDepth = 5

// Owner is one link of a pod's owner chain.
type Owner struct {
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`
	// Err is set when the owners of this object could not be read; the chain stops here.
	Err string `json:"error,omitempty"`
}

func (o Owner) String() string {
	s := o.Kind + "/" + o.Name
	if o.Err != "" {
		s += " (its owners unknown: " + o.Err + ")"
	}
	return s
}

// OwnerLookup returns the owner references of the object ref points to, in namespace.
type OwnerLookup interface {
	OwnerReferences(ctx context.Context, namespace string, ref metav1.OwnerReference) ([]metav1.OwnerReference, error)
}

// OwnerLookupFunc adapts a function to OwnerLookup.
type OwnerLookupFunc func(ctx context.Context, namespace string, ref metav1.OwnerReference) ([]metav1.OwnerReference, error)

// OwnerReferences calls f.
func (f OwnerLookupFunc) OwnerReferences(ctx context.Context, namespace string, ref metav1.OwnerReference) ([]metav1.OwnerReference, error) {
	return f(ctx, namespace, ref)
}

// APIOwnerLookup reads the built-in workload kinds (ReplicaSet, Deployment, StatefulSet, DaemonSet, Job, CronJob,
// ReplicationController) through client. Other kinds (custom resources) end the chain with no error: their owners are
// not followed. It needs get on those resources; a forbidden read ends the chain with the error shown.
func APIOwnerLookup(client API) OwnerLookup {
	return OwnerLookupFunc(func(ctx context.Context, ns string, ref metav1.OwnerReference) ([]metav1.OwnerReference, error) {
		group := ref.APIVersion
		if i := strings.Index(group, "/"); i >= 0 {
			group = group[:i]
		} else {
			group = ""
		}
		meta, followed, err := client.Owner(ctx, group, ref.Kind, ns, ref.Name)
		if !followed {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("get %s %s/%s: %w", ref.Kind, ns, ref.Name, err)
		}
		if string(meta.GetUID()) != string(ref.UID) && ref.UID != "" {
			return nil, fmt.Errorf("%s %s/%s has uid %s, the reference names uid %s (recreated)", ref.Kind, ns, ref.Name, meta.GetUID(), ref.UID)
		}
		return meta.GetOwnerReferences(), nil
	})
}

// controllerOf picks the reference to follow: the controller, else the first one.
func controllerOf(refs []metav1.OwnerReference) (metav1.OwnerReference, bool) {
	for _, r := range refs {
		if r.Controller != nil && *r.Controller {
			return r, true
		}
	}
	if len(refs) > 0 {
		return refs[0], true
	}
	return metav1.OwnerReference{}, false
}

// OwnerChain follows the controller references from the pod up: Pod → ReplicaSet → Deployment gives
// [ReplicaSet/x, Deployment/y]. lookup may be nil: then only the pod's direct owner is listed. A failed lookup ends
// the chain with the error recorded in the last link; it is never fatal.
func OwnerChain(ctx context.Context, lookup OwnerLookup, pod *corev1.Pod) []Owner {
	var chain []Owner
	seen := map[string]bool{}
	ref, ok := controllerOf(pod.OwnerReferences)
	for ok && len(chain) < maxOwnerDepth {
		key := ref.Kind + "/" + ref.Name + "/" + string(ref.UID)
		if seen[key] {
			break
		}
		seen[key] = true
		link := Owner{Kind: ref.Kind, Name: ref.Name, UID: string(ref.UID), APIVersion: ref.APIVersion}
		if lookup == nil {
			chain = append(chain, link)
			break
		}
		refs, err := lookup.OwnerReferences(ctx, pod.Namespace, ref)
		if err != nil {
			link.Err = err.Error()
		}
		chain = append(chain, link)
		if err != nil {
			break
		}
		ref, ok = controllerOf(refs)
	}
	return chain
}

// QOSClass is the pod's status.qosClass, or computed from the resources when the status has none yet
// (Guaranteed: every container has cpu and memory limits equal to its requests; BestEffort: no container has any;
// Burstable otherwise).
func QOSClass(pod *corev1.Pod) corev1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	hasAny, guaranteed := false, true
	for _, c := range all {
		if len(c.Resources.Requests) > 0 || len(c.Resources.Limits) > 0 {
			hasAny = true
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			lim, ok := c.Resources.Limits[r]
			if !ok {
				guaranteed = false
				continue
			}
			if req, ok := c.Resources.Requests[r]; ok && req.Cmp(lim) != 0 {
				guaranteed = false
			}
		}
	}
	switch {
	case !hasAny:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

func formatResources(rl corev1.ResourceList) string {
	names := make([]string, 0, len(rl))
	for n := range rl {
		names = append(names, string(n))
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		q := rl[corev1.ResourceName(n)]
		parts[i] = n + "=" + q.String()
	}
	return strings.Join(parts, " ")
}

func formatMap(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "=" + m[k]
	}
	return out
}

type textBuilder struct{ strings.Builder }

func (b *textBuilder) field(name, value string) {
	_, _ = fmt.Fprintf(b, "%-17s %s\n", name+":", value) // a strings.Builder never returns a write error
}

func (b *textBuilder) list(name string, values []string) {
	if len(values) == 0 {
		b.field(name, "<none>")
		return
	}
	b.field(name, values[0])
	for _, v := range values[1:] {
		_, _ = fmt.Fprintf(b, "%-17s %s\n", "", v)
	}
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return t.UTC().Format(time.RFC3339)
}

// Summary is the content of pod.txt: a short human description of the pod.
func Summary(pod *corev1.Pod, owners []Owner, writtenAt time.Time) string {
	var b textBuilder
	b.field("Namespace", pod.Namespace)
	b.field("Name", pod.Name)
	b.field("UID", string(pod.UID))
	b.field("Node", orNone(pod.Spec.NodeName))
	chain := make([]string, len(owners))
	for i, o := range owners {
		chain[i] = o.String()
	}
	b.field("Owners", orNone(strings.Join(chain, " -> ")))
	b.list("Labels", formatMap(pod.Labels))
	b.field("Service account", orNone(pod.Spec.ServiceAccountName))
	start := time.Time{}
	if pod.Status.StartTime != nil {
		start = pod.Status.StartTime.Time
	}
	b.field("Start time", formatTime(start))
	b.field("QoS class", string(QOSClass(pod)))
	if sc := pod.Spec.SecurityContext; sc != nil {
		var ids []string
		if sc.RunAsUser != nil {
			ids = append(ids, fmt.Sprintf("runAsUser=%d", *sc.RunAsUser))
		}
		if sc.RunAsGroup != nil {
			ids = append(ids, fmt.Sprintf("runAsGroup=%d", *sc.RunAsGroup))
		}
		if sc.FSGroup != nil {
			ids = append(ids, fmt.Sprintf("fsGroup=%d", *sc.FSGroup))
		}
		if len(ids) > 0 {
			b.field("Security", strings.Join(ids, " "))
		}
	}
	writeContainers := func(title string, cs []corev1.Container) {
		if len(cs) == 0 {
			return
		}
		b.WriteString(title + ":\n")
		for _, c := range cs {
			line := "  " + c.Name + " (image " + c.Image + ")"
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				line += " sidecar"
			}
			b.WriteString(line + "\n")
			b.WriteString("    requests: " + orNone(formatResources(c.Resources.Requests)) + "\n")
			b.WriteString("    limits:   " + orNone(formatResources(c.Resources.Limits)) + "\n")
		}
	}
	writeContainers("Init containers", pod.Spec.InitContainers)
	writeContainers("Containers", pod.Spec.Containers)
	if len(pod.Spec.EphemeralContainers) > 0 {
		b.WriteString("Ephemeral containers:\n")
		for _, c := range pod.Spec.EphemeralContainers {
			b.WriteString("  " + c.Name + " (image " + c.Image + ")\n")
		}
	}
	b.field("Written", formatTime(writtenAt)+" by keeplog from the Kubernetes API")
	return b.String()
}

// MinimalSummary is pod.txt when only the publish context is known (API not reachable yet).
func MinimalSummary(pc PodContext, writtenAt time.Time) string {
	var b textBuilder
	b.field("Namespace", pc.Pod.Namespace)
	b.field("Name", pc.Pod.Name)
	b.field("UID", pc.Pod.UID)
	b.field("Service account", orNone(pc.ServiceAccount))
	b.field("Written", formatTime(writtenAt)+" by keeplog from the publish context only")
	b.WriteString("Incomplete: the Kubernetes API was not reachable at publish; keeplog completes this file and writes\n" +
		"pod.yaml when it is.\n")
	return b.String()
}
