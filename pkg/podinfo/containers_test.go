package podinfo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/keeplog/keeplog/pkg/api"
)

func TestContainerDirOwnership(t *testing.T) {
	requireRoot(t)
	const setgid2775 = os.ModeDir | os.ModeSetgid | 0o775
	for _, tc := range []struct {
		name      string
		pod       *corev1.PodSecurityContext
		container *corev1.SecurityContext
		wantUID   uint32
		wantGID   uint32
		wantMode  os.FileMode
		wantRule  string
	}{
		{"fsGroup only", &corev1.PodSecurityContext{FSGroup: ptr(int64(2000))}, nil, 0, 2000, setgid2775, RuleFSGroup},
		{"fsGroup and pod runAsUser", &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(3000)), FSGroup: ptr(int64(2000))}, nil,
			1000, 2000, setgid2775, RuleFSGroup},
		{"fsGroup, container runAsUser overrides pod", &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), FSGroup: ptr(int64(2000))},
			&corev1.SecurityContext{RunAsUser: ptr(int64(1500))}, 1500, 2000, setgid2775, RuleFSGroup},
		{"pod runAsUser and runAsGroup", &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(3000))}, nil,
			1000, 3000, setgid2775, RuleRunAsUser},
		{"container runAsUser/runAsGroup override pod", &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(3000))},
			&corev1.SecurityContext{RunAsUser: ptr(int64(1001)), RunAsGroup: ptr(int64(3001))}, 1001, 3001, setgid2775, RuleRunAsUser},
		{"runAsUser without group: group 0", nil, &corev1.SecurityContext{RunAsUser: ptr(int64(1000680000))}, 1000680000, 0, setgid2775, RuleRunAsUser},
		{"runAsGroup only", nil, &corev1.SecurityContext{RunAsGroup: ptr(int64(4000))}, 0, 4000, setgid2775, RuleRunAsGroup},
		{"nothing: any UID may write", nil, nil, 0, 0, os.ModeDir | 0o777, RuleAnyUser},
		{"empty security contexts: any UID may write", &corev1.PodSecurityContext{}, &corev1.SecurityContext{RunAsNonRoot: ptr(true)}, 0, 0, os.ModeDir | 0o777, RuleAnyUser},
	} {
		t.Run(tc.name, func(t *testing.T) {
			podDir := newPodDir(t, testRef)
			pod := testPod()
			pod.Spec.SecurityContext = tc.pod
			pod.Spec.Containers[0].SecurityContext = tc.container
			dirs, err := NewWriter(Options{}).EnsureContainerDirs(podDir, pod)
			if err != nil {
				t.Fatal(err)
			}
			if len(dirs) != 3 || dirs[0].Name != "migrate" || dirs[1].Name != "app" || dirs[2].Name != "sidecar" {
				t.Fatalf("dirs = %+v, want migrate, app, sidecar", dirs)
			}
			if dirs[1].Rule != tc.wantRule {
				t.Errorf("rule = %s, want %s", dirs[1].Rule, tc.wantRule)
			}
			uid, gid, mode := statOf(t, filepath.Join(podDir, "app"))
			if uid != tc.wantUID || gid != tc.wantGID || mode != tc.wantMode {
				t.Errorf("app/ is %d:%d %v, want %d:%d %v", uid, gid, mode, tc.wantUID, tc.wantGID, tc.wantMode)
			}
			// The sidecar has no container-level context: only the pod's applies to it.
			wantUID, wantGID, wantMode, _ := ContainerDirOwnership(pod, &pod.Spec.Containers[1])
			uid, gid, mode = statOf(t, filepath.Join(podDir, "sidecar"))
			if int(uid) != wantUID || int(gid) != wantGID || mode != os.ModeDir|wantMode {
				t.Errorf("sidecar/ is %d:%d %v, want %d:%d %v", uid, gid, mode, wantUID, wantGID, wantMode)
			}
		})
	}
}

func TestContainerDirsAreIdempotentAndRepairOwnership(t *testing.T) {
	requireRoot(t)
	podDir := newPodDir(t, testRef)
	pod := testPod()
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), FSGroup: ptr(int64(2000))}
	w := NewWriter(Options{})
	if _, err := w.EnsureContainerDirs(podDir, pod); err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(podDir, "app")
	writeFile(t, filepath.Join(app, "gc.log"), "data")
	// kubelet made it for a subPath before keeplog knew the pod (API down at publish): root 0750.
	if err := os.Chown(app, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(app, 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := w.EnsureContainerDirs(podDir, pod); err != nil {
		t.Fatal(err)
	}
	if uid, gid, mode := statOf(t, app); uid != 1000 || gid != 2000 || mode != os.ModeDir|os.ModeSetgid|0o775 {
		t.Errorf("app/ is %d:%d %v after the second call", uid, gid, mode)
	}
	if got := readFile(t, filepath.Join(app, "gc.log")); got != "data" {
		t.Errorf("the application's file changed: %q", got)
	}
}

func TestContainerDirsRefuseBadNamesAndSymlinks(t *testing.T) {
	requireRoot(t)
	podDir := newPodDir(t, testRef)
	file, dir := outsideTarget(t)
	// The pod planted app -> a directory outside and sidecar -> a file outside.
	if err := os.Symlink(dir, filepath.Join(podDir, "app")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(file, filepath.Join(podDir, "sidecar")); err != nil {
		t.Fatal(err)
	}
	pod := testPod()
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), FSGroup: ptr(int64(2000))}
	pod.Spec.Containers = append(pod.Spec.Containers,
		corev1.Container{Name: ".."}, corev1.Container{Name: "a/b"}, corev1.Container{Name: "Upper"},
		corev1.Container{Name: ".keeplog"}, corev1.Container{Name: strings.Repeat("a", 64)})
	dirs, err := NewWriter(Options{}).EnsureContainerDirs(podDir, pod)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`"app"`, `"sidecar"`, `".."`, `"a/b"`, `"Upper"`, `".keeplog"`, "DNS-1123", "symlinks refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
	if len(dirs) != 1 || dirs[0].Name != "migrate" {
		t.Errorf("dirs = %+v, want only migrate", dirs)
	}
	if _, _, mode := statOf(t, filepath.Join(podDir, "migrate")); !mode.IsDir() {
		t.Errorf("migrate/ not made: %v", mode)
	}
	assertUntouched(t, file, dir)
	if _, err := os.Lstat(filepath.Join(podDir, api.KeeplogDir)); err == nil {
		t.Error("a container named .keeplog made keeplog's directory")
	}
	entries, _ := os.ReadDir(filepath.Dir(podDir))
	if len(entries) != 1 {
		t.Errorf("something was made beside the pod directory: %v", entries)
	}
}

func TestContainerDirsThroughSymlinkedPodDir(t *testing.T) {
	requireRoot(t)
	file, dir := outsideTarget(t)
	link := filepath.Join(t.TempDir(), testRef.DirName())
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWriter(Options{}).EnsureContainerDirs(link, testPod()); err == nil || !strings.Contains(err.Error(), "symlinks refused") {
		t.Errorf("err = %v", err)
	}
	assertUntouched(t, file, dir)
}
