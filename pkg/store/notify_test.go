package store

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestSubscribeNamesEveryRecordChange: each call that writes or removes a volume's records tells the subscribers
// which volume, once the change is on disk (a pod directory's claim: once the directory exists); a call that
// changes nothing tells nothing, and a cancelled subscription hears nothing more.
func TestSubscribeNamesEveryRecordChange(t *testing.T) {
	s, root := openStore(t)
	var got []string
	cancel := s.Subscribe(func(id string) {
		if id == "v1" {
			if _, err := os.Lstat(filepath.Join(root, "d")); err != nil && len(got) == 1 {
				t.Errorf("told of the claim of d before it exists: %v", err)
			}
		}
		got = append(got, id)
	})
	steps := []struct {
		name string
		do   func() error
		want []string
	}{
		{"CreateVolume", func() error { _, err := s.CreateVolume(&Volume{ID: "v1"}); return err }, []string{"v1"}},
		{"ClaimPodDir", func() error { _, err := s.ClaimPodDir("v1", "d", nil); return err }, []string{"v1"}},
		{"ClaimPodDir again (no new record)", func() error { _, err := s.ClaimPodDir("v1", "d", nil); return err }, nil},
		{"AddTarget", func() error { return s.AddTarget("v1", Target{Path: "/t", PodDir: "d"}) }, []string{"v1"}},
		{"SetPodAnnotations", func() error { return s.SetPodAnnotations("v1", "d", map[string]string{"a": "b"}) }, []string{"v1"}},
		{"SetPodAnnotations unchanged", func() error { return s.SetPodAnnotations("v1", "d", map[string]string{"a": "b"}) }, nil},
		{"RemoveTarget", func() error { return s.RemoveTarget("v1", "/t") }, []string{"v1"}},
		{"RemoveTarget unknown", func() error { return s.RemoveTarget("v1", "/t") }, nil},
		{"CreateVolume v2", func() error { _, err := s.CreateVolume(&Volume{ID: "v2"}); return err }, []string{"v2"}},
		{"ClaimPodDir v2", func() error { _, err := s.ClaimPodDir("v2", "e", nil); return err }, []string{"v2"}},
		{"DeletePodDir", func() error { _, err := s.DeletePodDir("e", DeleteCheck{Volume: "v2"}); return err }, []string{"v2"}},
		{"DeleteVolume", func() error { return s.DeleteVolume("v1") }, []string{"v1"}},
		{"DeleteVolume unknown", func() error { return s.DeleteVolume("v1") }, nil},
	}
	for _, st := range steps {
		got = nil
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if !slices.Equal(got, st.want) {
			t.Errorf("%s told %v, want %v", st.name, got, st.want)
		}
	}
	cancel()
	got = nil
	if _, err := s.CreateVolume(&Volume{ID: "v3", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("told %v after cancel", got)
	}
}
