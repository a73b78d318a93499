package dump

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	testUID = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
	testCID = "3f1e0c9a8b7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f"
)

// writeTree writes files (path relative to root → content) below root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// v1Stat is a memory.stat as the kernel writes it for cgroup v1 (abridged, real key order): inactive_file is the
// cgroup's own, total_inactive_file the hierarchy's, which kubelet uses.
func v1Stat(inactive, totalInactive string) string {
	return "cache 1000\nrss 2000\ninactive_anon 0\nactive_anon 2000\ninactive_file " + inactive +
		"\nactive_file 500\nhierarchical_memory_limit 104857600\ntotal_cache 1000\ntotal_rss 2000\ntotal_inactive_file " +
		totalInactive + "\ntotal_active_file 500\n"
}

func v2Stat(inactive string) string {
	return "anon 50000000\nfile 40000000\nkernel 1000000\nactive_anon 50000000\ninactive_file " + inactive +
		"\nactive_file 10000000\n"
}

func TestCgroupV1LayoutsAndWorkingSet(t *testing.T) {
	for _, layout := range []struct{ name, podDir, ctrDir string }{
		{"cgroupfs burstable", "kubepods/burstable/pod" + testUID, testCID},
		{"cgroupfs besteffort", "kubepods/besteffort/pod" + testUID, testCID},
		{"cgroupfs guaranteed", "kubepods/pod" + testUID, testCID},
		{"systemd burstable", "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(testUID, "-", "_") + ".slice", "cri-containerd-" + testCID + ".scope"},
		{"systemd guaranteed", "kubepods.slice/kubepods-pod" + strings.ReplaceAll(testUID, "-", "_") + ".slice", "cri-containerd-" + testCID + ".scope"},
	} {
		t.Run(layout.name, func(t *testing.T) {
			root := t.TempDir()
			mem := filepath.Join("memory", layout.podDir)
			writeTree(t, root, map[string]string{
				"memory/memory.usage_in_bytes": "999999999\n",
				// A sibling pod and another container of the pod, which must not be read.
				"memory/kubepods/burstable/pod11111111-2222-3333-4444-555555555555/" + testCID + "/memory.usage_in_bytes": "1\n",
				filepath.Join(mem, "pause0000/memory.usage_in_bytes"):                                                     "7\n",
				filepath.Join(mem, layout.ctrDir, "memory.usage_in_bytes"):                                                "90000000\n",
				filepath.Join(mem, layout.ctrDir, "memory.stat"):                                                          v1Stat("123", "10000000"),
				filepath.Join(mem, layout.ctrDir, "memory.limit_in_bytes"):                                                "104857600\n",
			})
			r := NewCgroupReader(root)
			m, err := r.Read(testUID, testCID)
			if err != nil {
				t.Fatal(err)
			}
			// usage − total_inactive_file, not − inactive_file.
			if m.WorkingSet != 80000000 || m.Limit != 104857600 {
				t.Fatalf("read %+v, want working set 80000000 (90000000 − total_inactive_file 10000000) and limit 104857600", m)
			}
			if !strings.HasSuffix(m.Cgroup, filepath.Join(layout.podDir, layout.ctrDir)) {
				t.Fatalf("read from %s", m.Cgroup)
			}
			if !Above(m, 76) || Above(m, 77) { // 80000000/104857600 = 76.3 %
				t.Fatalf("76.3%% of the limit: Above(76)=%v Above(77)=%v", Above(m, 76), Above(m, 77))
			}
		})
	}
}

func TestCgroupV1NoLimitAndFloor(t *testing.T) {
	root := t.TempDir()
	dir := "memory/kubepods/besteffort/pod" + testUID + "/" + testCID
	writeTree(t, root, map[string]string{
		"memory/memory.usage_in_bytes": "1\n",
		dir + "/memory.usage_in_bytes": "4096\n",
		dir + "/memory.stat":           v1Stat("0", "8192"), // more inactive file pages than usage: floor at 0
		dir + "/memory.limit_in_bytes": "9223372036854771712\n",
	})
	m, err := NewCgroupReader(root).Read(testUID, testCID)
	if err != nil {
		t.Fatal(err)
	}
	if m.WorkingSet != 0 || m.Limit != 0 {
		t.Fatalf("read %+v, want working set floored at 0 and no limit", m)
	}
	if Above(m, 1) {
		t.Fatal("a container without a limit is never above a threshold")
	}
}

func TestCgroupV2LayoutsAndWorkingSet(t *testing.T) {
	for _, layout := range []struct{ name, podDir, ctrDir, max string }{
		{"cgroupfs", "kubepods/burstable/pod" + testUID, testCID, "268435456\n"},
		{"systemd", "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + strings.ReplaceAll(testUID, "-", "_") + ".slice", "cri-containerd-" + testCID + ".scope", "max\n"},
	} {
		t.Run(layout.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(layout.podDir, layout.ctrDir)
			writeTree(t, root, map[string]string{
				"cgroup.controllers":            "cpuset cpu io memory pids\n",
				"system.slice/x/memory.current": "1\n",
				dir + "/memory.current":         "230000000\n",
				dir + "/memory.stat":            v2Stat("20000000"),
				dir + "/memory.max":             layout.max,
			})
			m, err := NewCgroupReader(root).Read(testUID, testCID)
			if err != nil {
				t.Fatal(err)
			}
			wantLimit := uint64(268435456)
			if layout.max == "max\n" {
				wantLimit = 0
			}
			if m.WorkingSet != 210000000 || m.Limit != wantLimit {
				t.Fatalf("read %+v, want working set 210000000 (memory.current − inactive_file) and limit %d", m, wantLimit)
			}
			if wantLimit > 0 && (!Above(m, 78) || Above(m, 79)) { // 210000000/268435456 = 78.2 %
				t.Fatalf("78.2%%: Above(78)=%v Above(79)=%v", Above(m, 78), Above(m, 79))
			}
		})
	}
}

func TestCgroupErrorsSayWhat(t *testing.T) {
	root := t.TempDir()
	if _, err := NewCgroupReader(root).Read(testUID, testCID); err == nil || !strings.Contains(err.Error(), "no memory cgroup below "+root) {
		t.Fatalf("empty root: %v", err)
	}
	writeTree(t, root, map[string]string{"memory/memory.usage_in_bytes": "1\n",
		"memory/kubepods/pod" + testUID + "/other/memory.usage_in_bytes": "1\n"})
	r := NewCgroupReader(root)
	if _, err := r.Read(testUID, testCID); err == nil || !strings.Contains(err.Error(), "no cgroup of container "+testCID) {
		t.Fatalf("missing container: %v", err)
	}
	if _, err := r.Read("11111111-2222-3333-4444-555555555555", testCID); err == nil || !strings.Contains(err.Error(), "no cgroup of pod 11111111") {
		t.Fatalf("missing pod: %v", err)
	}
	if _, err := r.Read("../../etc", testCID); err == nil {
		t.Fatal("a pod UID with a path was accepted")
	}
	writeTree(t, root, map[string]string{"memory/kubepods/pod" + testUID + "/" + testCID + "/memory.usage_in_bytes": "12x\n"})
	if _, err := r.Read(testUID, testCID); err == nil || !strings.Contains(err.Error(), `"12x" is not a number`) {
		t.Fatalf("malformed usage: %v", err)
	}
}

// TestCgroupRelookup: a cached location that disappeared (the pod's cgroup moved) is looked up again.
func TestCgroupRelookup(t *testing.T) {
	root := t.TempDir()
	old := "memory/kubepods/burstable/pod" + testUID + "/" + testCID
	writeTree(t, root, map[string]string{"memory/memory.usage_in_bytes": "1\n",
		old + "/memory.usage_in_bytes": "100\n", old + "/memory.stat": v1Stat("0", "0"), old + "/memory.limit_in_bytes": "1000\n"})
	r := NewCgroupReader(root)
	if m, err := r.Read(testUID, testCID); err != nil || m.WorkingSet != 100 {
		t.Fatalf("%+v %v", m, err)
	}
	// kubelet moved the pod from burstable to guaranteed (a resize): same IDs, new place.
	if err := os.RemoveAll(filepath.Join(root, "memory/kubepods/burstable")); err != nil {
		t.Fatal(err)
	}
	moved := "memory/kubepods/pod" + testUID + "/" + testCID
	writeTree(t, root, map[string]string{moved + "/memory.usage_in_bytes": "900\n", moved + "/memory.stat": v1Stat("0", "0"),
		moved + "/memory.limit_in_bytes": "1000\n"})
	if m, err := r.Read(testUID, testCID); err != nil || m.WorkingSet != 900 {
		t.Fatalf("after the move: %+v %v", m, err)
	}
}

// TestAboveNoOverflow: limits near 2^62 (v1 "no limit" is 2^63) must not overflow the comparison.
func TestAboveNoOverflow(t *testing.T) {
	m := Memory{WorkingSet: 1 << 61, Limit: 1<<62 - 1}
	if Above(m, 51) || !Above(m, 50) {
		t.Fatalf("huge values: Above(50)=%v Above(51)=%v", Above(m, 50), Above(m, 51))
	}
}

func TestCgroupForget(t *testing.T) {
	root := t.TempDir()
	dir := "memory/kubepods/pod" + testUID + "/" + testCID
	writeTree(t, root, map[string]string{"memory/memory.usage_in_bytes": "1\n",
		dir + "/memory.usage_in_bytes": "1\n", dir + "/memory.stat": v1Stat("0", "0"), dir + "/memory.limit_in_bytes": "2\n"})
	r := NewCgroupReader(root)
	if _, err := r.Read(testUID, testCID); err != nil {
		t.Fatal(err)
	}
	r.Forget(map[string]bool{testCID: true})
	if len(r.paths) != 1 {
		t.Fatalf("kept %v", r.paths)
	}
	r.Forget(nil)
	if len(r.paths) != 0 {
		t.Fatalf("a container not seen any more is still cached: %v", r.paths)
	}
}
