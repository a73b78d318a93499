package podinfo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clocktesting "k8s.io/utils/clock/testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/keeplog/keeplog/pkg/api"
)

func TestPodYAMLRedaction(t *testing.T) {
	secrets := []string{"hunter2", "init-secret-value", "sidecar-secret", "ephemeral-secret"}
	for _, tc := range []struct {
		name          string
		keepEnvValues bool
	}{
		{"redacted by default", false},
		{"KeepEnvValues keeps them", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod()
			data, err := PodYAML(pod, tc.keepEnvValues)
			if err != nil {
				t.Fatal(err)
			}
			text := string(data)
			for _, s := range secrets {
				if got := strings.Contains(text, s); got != tc.keepEnvValues {
					t.Errorf("pod.yaml contains %q: %v, want %v", s, got, tc.keepEnvValues)
				}
			}
			if strings.Contains(text, "\nmanagedFields") || strings.Contains(text, " managedFields:") || strings.Contains(text, "kube-controller-manager") {
				t.Errorf("managedFields written:\n%s", text)
			}
			var back corev1.Pod
			if err := yaml.Unmarshal(data, &back); err != nil {
				t.Fatalf("pod.yaml is not a pod: %v", err)
			}
			if len(back.ManagedFields) != 0 {
				t.Errorf("managedFields read back: %v", back.ManagedFields)
			}
			if back.Kind != "Pod" || back.APIVersion != "v1" || string(back.UID) != testRef.UID {
				t.Errorf("kind/apiVersion/uid = %q/%q/%q", back.Kind, back.APIVersion, back.UID)
			}
			env := back.Spec.Containers[0].Env
			wantValue := Redacted
			if tc.keepEnvValues {
				wantValue = "hunter2"
			}
			if env[0].Value != wantValue {
				t.Errorf("DB_PASSWORD = %q, want %q", env[0].Value, wantValue)
			}
			if env[1].Value != "" {
				t.Errorf("an empty value became %q", env[1].Value)
			}
			if env[2].ValueFrom == nil || env[2].ValueFrom.SecretKeyRef == nil || env[2].ValueFrom.SecretKeyRef.Name != "api" || env[2].ValueFrom.SecretKeyRef.Key != "key" {
				t.Errorf("secretKeyRef lost: %+v", env[2])
			}
			if env[3].ValueFrom == nil || env[3].ValueFrom.FieldRef == nil || env[3].ValueFrom.FieldRef.FieldPath != "status.podIP" {
				t.Errorf("fieldRef lost: %+v", env[3])
			}
			if got := back.Spec.EphemeralContainers[0].Env[0].Value; got != wantValue && !tc.keepEnvValues {
				t.Errorf("ephemeral container env = %q", got)
			}
			if back.Annotations["team"] != "payments" {
				t.Errorf("other annotations lost: %v", back.Annotations)
			}
			lastApplied := back.Annotations[LastAppliedAnnotation]
			if (lastApplied == Redacted) == tc.keepEnvValues {
				t.Errorf("last-applied-configuration = %q", lastApplied)
			}
			// The caller's object is not changed.
			if pod.Spec.Containers[0].Env[0].Value != "hunter2" || len(pod.ManagedFields) != 1 {
				t.Error("PodYAML changed the pod it was given")
			}
		})
	}
}

func TestWritePodMetadataFiles(t *testing.T) {
	requireRoot(t)
	dir := newPodDir(t, testRef)
	w := NewWriter(Options{Clock: clocktesting.NewFakePassiveClock(fixedNow)})
	if err := w.WritePodMetadata(context.Background(), dir, testPod()); err != nil {
		t.Fatal(err)
	}
	kd := filepath.Join(dir, api.KeeplogDir)
	if uid, gid, mode := statOf(t, kd); uid != 0 || gid != 0 || mode != os.ModeDir|0o755 {
		t.Errorf(".keeplog is %d:%d %v, want 0:0 drwxr-xr-x", uid, gid, mode)
	}
	for _, name := range []string{api.PodYAMLFile, api.PodTextFile} {
		if uid, gid, mode := statOf(t, filepath.Join(kd, name)); uid != 0 || gid != 0 || mode != 0o644 {
			t.Errorf("%s is %d:%d %v, want 0:0 -rw-r--r--", name, uid, gid, mode)
		}
	}
	if got := readFile(t, filepath.Join(kd, api.PodYAMLFile)); strings.Contains(got, "hunter2") || !strings.Contains(got, Redacted) {
		t.Errorf("pod.yaml not redacted:\n%s", got)
	}
	entries, _ := os.ReadDir(kd)
	if len(entries) != 2 {
		t.Errorf(".keeplog holds %d entries (temp files left?): %v", len(entries), entries)
	}
}
