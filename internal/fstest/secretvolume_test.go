package fstest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Each Write leaves kubelet's layout: the keys are symlinks through ..data, ..data points at the one timestamped
// directory left, a dropped key's link is gone, and reading a key gives the latest content.
func TestSecretVolumeLayout(t *testing.T) {
	dir := t.TempDir()
	v := NewSecretVolume(t, dir, map[string]string{"user": "a", "password": "p1"})
	first, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	v.Write(map[string]string{"user": "b", "privateKey": "k"})
	second, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil || second == first || !strings.HasPrefix(second, "..20") {
		t.Fatalf("..data -> %q after the swap (was %q): %v", second, first, err)
	}
	for k, want := range map[string]string{"user": "b", "privateKey": "k"} {
		if l, err := os.Readlink(filepath.Join(dir, k)); err != nil || l != filepath.Join("..data", k) {
			t.Errorf("%s: link %q, %v", k, l, err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, k)); err != nil || string(b) != want {
			t.Errorf("%s reads %q, %v; want %q", k, b, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "password")); !os.IsNotExist(err) {
		t.Errorf("the dropped key's link: %v", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 4 { // ..<ts>, ..data, privateKey, user
		t.Errorf("the volume holds %v, want one timestamped directory, ..data and the two keys", names)
	}
}
