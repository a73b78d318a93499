package podinfo

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Redacted replaces every literal env value (and kubectl's last-applied-configuration, which repeats them) in pod.yaml
// unless Options.KeepEnvValues is set.
const Redacted = "<redacted by keeplog>"

// LastAppliedAnnotation is kubectl's copy of the applied manifest; it holds the env values a second time.
const LastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// RedactPod returns a deep copy of pod as it should be written: managedFields dropped and, unless keepEnvValues,
// the literal value of every env var of every init, regular and ephemeral container replaced by Redacted.
// valueFrom references (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef) are kept: they name where a value
// comes from, not the value. kubectl's last-applied-configuration annotation is redacted too, as it repeats the
// manifest with its env values. Command lines and args are kept as they are: keeplog cannot tell a secret there.
func RedactPod(pod *corev1.Pod, keepEnvValues bool) *corev1.Pod {
	p := pod.DeepCopy()
	p.ManagedFields = nil
	if p.Kind == "" {
		p.Kind = "Pod"
	}
	if p.APIVersion == "" {
		p.APIVersion = "v1"
	}
	if keepEnvValues {
		return p
	}
	redact := func(env []corev1.EnvVar) {
		for i := range env {
			if env[i].Value != "" {
				env[i].Value = Redacted
			}
		}
	}
	for i := range p.Spec.InitContainers {
		redact(p.Spec.InitContainers[i].Env)
	}
	for i := range p.Spec.Containers {
		redact(p.Spec.Containers[i].Env)
	}
	for i := range p.Spec.EphemeralContainers {
		redact(p.Spec.EphemeralContainers[i].Env)
	}
	if _, ok := p.Annotations[LastAppliedAnnotation]; ok {
		p.Annotations[LastAppliedAnnotation] = Redacted
	}
	return p
}

// PodYAML is the content of pod.yaml: a comment line saying what was changed, then the redacted pod.
func PodYAML(pod *corev1.Pod, keepEnvValues bool) ([]byte, error) {
	data, err := yaml.Marshal(RedactPod(pod, keepEnvValues))
	if err != nil {
		return nil, fmt.Errorf("encode pod %s/%s as YAML: %w", pod.Namespace, pod.Name, err)
	}
	header := "# Written by keeplog: the pod as the API returned it, managedFields removed"
	if !keepEnvValues {
		header += ", literal env values redacted"
	}
	return append([]byte(header+".\n"), data...), nil
}
