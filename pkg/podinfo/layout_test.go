package podinfo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// outsideTarget is a file and a directory outside the pod directory that must stay untouched.
func outsideTarget(t *testing.T) (file, dir string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "outside")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(dir, "shadow")
	writeFile(t, file, "root:secret\n")
	return file, dir
}

func assertUntouched(t *testing.T, file, dir string) {
	t.Helper()
	if got := readFile(t, file); got != "root:secret\n" {
		t.Errorf("outside file changed: %q", got)
	}
	if uid, gid, mode := statOf(t, file); uid != 0 || gid != 0 || mode != 0o644 {
		t.Errorf("outside file is now %d:%d %v", uid, gid, mode)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("outside directory now holds %v", entries)
	}
	if _, _, mode := statOf(t, dir); mode != os.ModeDir|0o700 {
		t.Errorf("outside directory mode is now %v", mode)
	}
}

func TestMetadataNeverFollowsPlantedSymlinks(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, podDir, file, dir string)
	}{
		{".keeplog is a symlink to a directory outside", func(t *testing.T, podDir, file, dir string) {
			if err := os.Symlink(dir, filepath.Join(podDir, api.KeeplogDir)); err != nil {
				t.Fatal(err)
			}
		}},
		{".keeplog is a pod-owned directory with pod.yaml and pod.txt symlinks", func(t *testing.T, podDir, file, dir string) {
			kd := filepath.Join(podDir, api.KeeplogDir)
			if err := os.Mkdir(kd, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(kd, 1000, 1000); err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{api.PodYAMLFile, api.PodTextFile} {
				if err := os.Symlink(file, filepath.Join(kd, n)); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"root-owned .keeplog holds symlinks named like the files", func(t *testing.T, podDir, file, dir string) {
			kd := filepath.Join(podDir, api.KeeplogDir)
			if err := os.Mkdir(kd, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{api.PodYAMLFile, api.PodTextFile} {
				if err := os.Symlink(file, filepath.Join(kd, n)); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{".keeplog is a regular file", func(t *testing.T, podDir, file, dir string) {
			writeFile(t, filepath.Join(podDir, api.KeeplogDir), "not a dir")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			podDir := newPodDir(t, testRef)
			file, dir := outsideTarget(t)
			tc.plant(t, podDir, file, dir)
			w := NewWriter(Options{Clock: clocktesting.NewFakePassiveClock(fixedNow)})
			if err := w.WritePodMetadata(context.Background(), podDir, testPod()); err != nil {
				t.Fatal(err)
			}
			assertUntouched(t, file, dir)
			kd := filepath.Join(podDir, api.KeeplogDir)
			if uid, _, mode := statOf(t, kd); uid != 0 || mode != os.ModeDir|0o755 {
				t.Errorf(".keeplog is uid %d %v", uid, mode)
			}
			for _, n := range []string{api.PodYAMLFile, api.PodTextFile} {
				if _, _, mode := statOf(t, filepath.Join(kd, n)); !mode.IsRegular() {
					t.Errorf("%s is %v, want a regular file", n, mode)
				}
			}
			if !strings.Contains(readFile(t, filepath.Join(kd, api.PodTextFile)), "web-7d9f8-abcde") {
				t.Error("pod.txt not written")
			}
		})
	}
}

func TestUntrustedKeeplogDirIsMovedAsideAndKept(t *testing.T) {
	requireRoot(t)
	podDir := newPodDir(t, testRef)
	kd := filepath.Join(podDir, api.KeeplogDir)
	if err := os.Mkdir(kd, 0o777); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(kd, api.PodTextFile), "forged by the pod")
	if err := os.Chown(kd, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	w := NewWriter(Options{Clock: clocktesting.NewFakePassiveClock(fixedNow)})
	if err := w.WritePodMetadata(context.Background(), podDir, testPod()); err != nil {
		t.Fatal(err)
	}
	matches, _ := filepath.Glob(filepath.Join(podDir, api.KeeplogDir+".untrusted-*"))
	if len(matches) != 1 {
		t.Fatalf("untrusted copies: %v", matches)
	}
	if got := readFile(t, filepath.Join(matches[0], api.PodTextFile)); got != "forged by the pod" {
		t.Errorf("forged file not kept as evidence: %q", got)
	}
	if got := readFile(t, filepath.Join(kd, api.PodTextFile)); strings.Contains(got, "forged") {
		t.Error("forged pod.txt still in .keeplog")
	}
}

func TestKubeletFSGroupWalkIsUndone(t *testing.T) {
	requireRoot(t)
	podDir := newPodDir(t, testRef)
	w := NewWriter(Options{Clock: clocktesting.NewFakePassiveClock(fixedNow)})
	if err := w.WritePodMetadata(context.Background(), podDir, testPod()); err != nil {
		t.Fatal(err)
	}
	// What kubelet's SetVolumeOwnership does after a mount with fsGroup 2000.
	kd := filepath.Join(podDir, api.KeeplogDir)
	for path, mode := range map[string]os.FileMode{kd: os.ModeSetgid | 0o775, filepath.Join(kd, api.PodYAMLFile): 0o664} {
		if err := os.Chown(path, -1, 2000); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteMinimal(podDir, PodContext{Pod: testRef}); err != nil { // writes nothing: pod.yaml is there
		t.Fatal(err)
	}
	if uid, gid, mode := statOf(t, kd); uid != 0 || gid != 0 || mode != os.ModeDir|0o755 {
		t.Errorf(".keeplog is %d:%d %v after a write", uid, gid, mode)
	}
	if uid, gid, mode := statOf(t, filepath.Join(kd, api.PodYAMLFile)); uid != 0 || gid != 0 || mode != 0o644 {
		t.Errorf("pod.yaml (not rewritten) is %d:%d %v after a write", uid, gid, mode)
	}
}

func TestPodDirChecks(t *testing.T) {
	requireRoot(t)
	w := NewWriter(Options{})
	t.Run("another pod's directory", func(t *testing.T) {
		other := store.PodRef{Namespace: "shop", Name: "other", UID: "11111111-2222-3333-4444-555555555555"}
		dir := newPodDir(t, other)
		err := w.WritePodMetadata(context.Background(), dir, testPod())
		if err == nil || !strings.Contains(err.Error(), other.DirName()) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("pod directory is a symlink", func(t *testing.T) {
		file, dir := outsideTarget(t)
		root := t.TempDir()
		link := filepath.Join(root, testRef.DirName())
		if err := os.Symlink(dir, link); err != nil {
			t.Fatal(err)
		}
		err := w.WritePodMetadata(context.Background(), link, testPod())
		if err == nil || !strings.Contains(err.Error(), "symlinks refused") {
			t.Errorf("err = %v", err)
		}
		assertUntouched(t, file, dir)
	})
	t.Run("relative path", func(t *testing.T) {
		if err := w.WritePodMetadata(context.Background(), "root/"+testRef.DirName(), testPod()); err == nil {
			t.Error("relative pod directory accepted")
		}
	})
}
