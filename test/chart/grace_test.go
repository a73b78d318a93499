package chart

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestStdoutGrace: with the grace on, --stdout-grace is set, the root and kubelet's pod logs come from one hostPath
// mount (link(2) fails across two mounts of the same filesystem, and keeplog would copy instead), and keeplog may
// read namespaces (pods are selected by their namespace's label too). Off, neither is there.
func TestStdoutGrace(t *testing.T) {
	off := render(t, Options{})
	c := off.container(t, "keeplog")
	if f := flagsOf(t, c.Args); f["stdout-grace"] != "false" {
		t.Fatalf("default --stdout-grace=%q, want false", f["stdout-grace"])
	}
	for _, m := range c.VolumeMounts {
		if m.Name == "grace-host-dir" {
			t.Fatal("the grace's host directory is mounted with the grace off")
		}
	}
	if hasNamespaceRule(off) {
		t.Fatal("namespaces readable with the grace off")
	}

	on := render(t, Options{Set: []string{"keeplog.stdoutGrace.enabled=true"}})
	c = on.container(t, "keeplog")
	if f := flagsOf(t, c.Args); f["stdout-grace"] != "true" {
		t.Fatalf("--stdout-grace=%q with the grace on", f["stdout-grace"])
	}
	m := mountOf(t, c, "grace-host-dir")
	if m.MountPath != "/var/log" || m.ReadOnly {
		t.Fatalf("grace mount %+v, want /var/log read-write", m)
	}
	for _, m := range c.VolumeMounts {
		if m.Name == "root" || m.Name == "pod-logs" {
			t.Fatalf("%s is mounted on its own beside the grace's host directory: hard links would fail", m.Name)
		}
	}
	if v := on.volume(t, "grace-host-dir"); v.HostPath == nil || v.HostPath.Path != "/var/log" {
		t.Fatalf("grace volume %+v", v)
	}
	if !hasNamespaceRule(on) {
		t.Fatal("namespaces are not readable with the grace on")
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Render(ctx, helm, repo, Options{Set: []string{"keeplog.stdoutGrace.enabled=true", "keeplog.root=/data/keeplog"}})
	if err == nil || !strings.Contains(err.Error(), "keeplog.root (/data/keeplog) below keeplog.stdoutGrace.hostDir (/var/log)") {
		t.Fatalf("a root outside hostDir rendered: %v", err)
	}
}

func hasNamespaceRule(r *rendered) bool {
	for _, cr := range r.clusterRoles {
		for _, rule := range cr.Rules {
			for _, res := range rule.Resources {
				if res == "namespaces" {
					return true
				}
			}
		}
	}
	return false
}
