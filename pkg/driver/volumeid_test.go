package driver

import (
	"strings"
	"testing"
)

func TestVolumeIDRoundTrip(t *testing.T) {
	for _, name := range []string{"pvc-0d6a", "a", "sanity-x.y", strings.Repeat("n", 60), strings.Repeat("n", 61), strings.Repeat("z", 128)} {
		id, err := newVolumeID("node-1.example", name)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		got, err := parseVolumeID(id.String())
		if err != nil || got != id {
			t.Fatalf("parse(%q) = %v, %v", id, got, err)
		}
		if len(id.String()) > 128 {
			t.Errorf("%q is %d bytes", id, len(id.String()))
		}
		if strings.ContainsAny(id.String(), "/_\x00") {
			t.Errorf("%q has a path-unsafe character", id)
		}
	}
}

func TestParseVolumeIDRefuses(t *testing.T) {
	for _, id := range []string{"", "fake-vol-id", "v2:node:x", "v1:node", "v1:node:x:y", "v1:Node:x", "v1:node:..",
		"v1:node:a/b", "v1:node:../../etc", "v1:node:.hidden", "v1:node:x\x00", "v1::x", "v1:node:" + strings.Repeat("a", 61), "v1:node:x~zz"} {
		if _, err := parseVolumeID(id); err == nil {
			t.Errorf("parseVolumeID(%q) accepted it", id)
		}
	}
}

func TestNodeIDValidation(t *testing.T) {
	for _, ok := range []string{"node-a", "ip-10-0-0-1.ec2.internal", strings.Repeat("a", 63)} {
		if err := ValidateNodeID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Node", "a_b", "a:b", "a/b", "..", strings.Repeat("a", 64)} {
		if err := ValidateNodeID(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzParseVolumeID(f *testing.F) {
	f.Add("v1:node:pvc-1")
	f.Add("v1:node:../x")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseVolumeID(s)
		if err != nil {
			return
		}
		if id.String() != s || strings.ContainsAny(s, "/_\x00") || strings.Contains(s, "..") {
			t.Fatalf("accepted unsafe or non-canonical ID %q", s)
		}
	})
}
