package chart

// Accessors for the rendered chart shared by the tests.

import (
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func (r *rendered) container(t *testing.T, name string) *corev1.Container {
	t.Helper()
	for i := range r.ds.Spec.Template.Spec.Containers {
		if c := &r.ds.Spec.Template.Spec.Containers[i]; c.Name == name {
			return c
		}
	}
	t.Fatalf("DaemonSet has no container %q", name)
	return nil
}

func (r *rendered) hasContainer(name string) bool {
	for _, c := range r.ds.Spec.Template.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	return false
}

func (r *rendered) volume(t *testing.T, name string) *corev1.Volume {
	t.Helper()
	for i := range r.ds.Spec.Template.Spec.Volumes {
		if v := &r.ds.Spec.Template.Spec.Volumes[i]; v.Name == name {
			return v
		}
	}
	t.Fatalf("DaemonSet has no volume %q", name)
	return nil
}

func mountOf(t *testing.T, c *corev1.Container, volume string) *corev1.VolumeMount {
	t.Helper()
	for i := range c.VolumeMounts {
		if m := &c.VolumeMounts[i]; m.Name == volume {
			return m
		}
	}
	t.Fatalf("container %s does not mount volume %q", c.Name, volume)
	return nil
}

// flagsOf parses "--name=value" / "--name" arguments; it fails the test on anything else and on a flag given twice.
func flagsOf(t *testing.T, args []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			t.Fatalf("argument %q is not a --flag", a)
		}
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok {
			value = "true"
		}
		if _, dup := out[name]; dup {
			t.Fatalf("flag --%s given twice in %q", name, args)
		}
		out[name] = value
	}
	return out
}

func wantFlags(t *testing.T, c *corev1.Container, want map[string]string) map[string]string {
	t.Helper()
	got := flagsOf(t, c.Args)
	for k, v := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("container %s: no --%s (args %q)", c.Name, k, c.Args)
		} else if g != v {
			t.Errorf("container %s: --%s=%s, want %s", c.Name, k, g, v)
		}
	}
	return got
}

func envFieldRef(t *testing.T, c *corev1.Container, name, fieldPath string) {
	t.Helper()
	for _, e := range c.Env {
		if e.Name == name {
			if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != fieldPath {
				t.Errorf("container %s: env %s is %+v, want the downward API's %s", c.Name, name, e, fieldPath)
			}
			return
		}
	}
	t.Errorf("container %s: no env %s", c.Name, name)
}

func envValue(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func socketPath(t *testing.T, endpoint string) string {
	t.Helper()
	p, ok := strings.CutPrefix(endpoint, "unix://")
	if !ok || !filepath.IsAbs(p) {
		t.Fatalf("--endpoint %q is not unix:///path", endpoint)
	}
	return p
}
