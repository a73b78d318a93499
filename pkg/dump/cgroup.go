package dump

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Memory is a container's memory as kubelet sees it.
type Memory struct {
	// WorkingSet is usage minus inactive file pages, floored at 0 — what kubelet and cAdvisor report as
	// container_memory_working_set_bytes and what the OOM decision is closest to.
	WorkingSet uint64
	// Limit is the cgroup's memory limit; 0 when the container has none.
	Limit uint64
	// Cgroup is the directory the values were read from.
	Cgroup string
}

// unlimitedV1 is the smallest memory.limit_in_bytes that means "no limit" (the kernel reports PAGE_COUNTER_MAX
// rounded to pages, 9223372036854771712 on 4 KiB pages).
const unlimitedV1 = uint64(1) << 62

// maxSearchDepth bounds the walk from the memory hierarchy's root to a pod's cgroup: kubepods/<qos>/pod<uid> with
// cgroupfs, kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice with systemd, one or two more with a
// kubelet --cgroup-root.
const maxSearchDepth = 5

// CgroupReader finds containers' memory cgroups below a cgroup root (/sys/fs/cgroup on a node, a recorded tree in
// tests) and reads their usage. It understands cgroup v1 (also in the hybrid layout: the memory controller at
// <root>/memory) and v2 (unified, <root>/cgroup.controllers), with kubelet's cgroupfs and systemd drivers: the pod's
// cgroup is found by its UID and the container's by its runtime ID, not by a fixed path. Safe for concurrent use.
type CgroupReader struct {
	root string

	mu    sync.Mutex
	paths map[string]string // container ID → its cgroup directory
}

// NewCgroupReader reads cgroups below root.
func NewCgroupReader(root string) *CgroupReader {
	return &CgroupReader{root: root, paths: map[string]string{}}
}

// version returns the memory hierarchy's directory and whether it is cgroup v2.
func (r *CgroupReader) version() (string, bool, error) {
	v1 := filepath.Join(r.root, "memory")
	if _, err := os.Stat(filepath.Join(v1, "memory.usage_in_bytes")); err == nil {
		return v1, false, nil
	}
	if _, err := os.Stat(filepath.Join(r.root, "cgroup.controllers")); err == nil {
		return r.root, true, nil
	}
	return "", false, fmt.Errorf("no memory cgroup below %s: neither v1 (%s/memory.usage_in_bytes) nor v2 (%s/cgroup.controllers)",
		r.root, v1, r.root)
}

// Read returns the memory of the container with runtime ID containerID of the pod with UID podUID.
func (r *CgroupReader) Read(podUID, containerID string) (Memory, error) {
	if !safeID(podUID) || !safeID(containerID) {
		return Memory{}, fmt.Errorf("pod uid %q / container id %q: not a plain ID", podUID, containerID)
	}
	base, v2, err := r.version()
	if err != nil {
		return Memory{}, err
	}
	r.mu.Lock()
	dir, ok := r.paths[containerID]
	r.mu.Unlock()
	if ok {
		m, err := readMemory(dir, v2)
		if err == nil {
			return m, nil
		}
		// The container is gone or was moved: find it again.
	}
	dir, err = findContainerCgroup(base, podUID, containerID)
	if err != nil {
		return Memory{}, err
	}
	r.mu.Lock()
	r.paths[containerID] = dir
	r.mu.Unlock()
	return readMemory(dir, v2)
}

// Forget drops the cached location of the containers not in keep.
func (r *CgroupReader) Forget(keep map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.paths {
		if !keep[id] {
			delete(r.paths, id)
		}
	}
}

// isPodCgroup matches a pod's cgroup directory name: cgroupfs "pod<uid>", systemd "kubepods[-<qos>]-pod<uid with
// _ for ->.slice".
func isPodCgroup(name, uid string) bool {
	if name == "pod"+uid {
		return true
	}
	return strings.HasSuffix(name, "pod"+strings.ReplaceAll(uid, "-", "_")+".slice")
}

// isContainerCgroup matches a container's cgroup directory name: cgroupfs "<id>", systemd "<runtime>-<id>.scope"
// (cri-containerd-, crio-, docker-).
func isContainerCgroup(name, id string) bool {
	return name == id || (strings.HasSuffix(name, "-"+id+".scope"))
}

// findContainerCgroup walks from base to the pod's cgroup (through the top level and whatever is below a
// "kubepods" directory, at most maxSearchDepth deep) and returns its child that is the container's.
func findContainerCgroup(base, podUID, containerID string) (string, error) {
	errFound := errors.New("found")
	var podDir string
	err := filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == base {
				return err
			}
			return nil // a cgroup removed while we walk
		}
		if !d.IsDir() {
			return nil
		}
		if path == base {
			return nil
		}
		rel, _ := filepath.Rel(base, path)
		depth := strings.Count(rel, string(filepath.Separator)) + 1
		if depth > maxSearchDepth {
			return filepath.SkipDir
		}
		if isPodCgroup(d.Name(), podUID) {
			podDir = path
			return errFound
		}
		// Below kubepods everything; above it, only the top level (a kubelet --cgroup-root such as /custom).
		if depth > 1 && !strings.Contains(rel, "kubepods") {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) {
		return "", fmt.Errorf("look for the cgroup of pod %s below %s: %w", podUID, base, err)
	}
	if podDir == "" {
		return "", fmt.Errorf("no cgroup of pod %s below %s (looked for pod%s or *pod%s.slice under kubepods*)",
			podUID, base, podUID, strings.ReplaceAll(podUID, "-", "_"))
	}
	entries, err := os.ReadDir(podDir)
	if err != nil {
		return "", fmt.Errorf("list pod cgroup %s: %w", podDir, err)
	}
	for _, e := range entries {
		if e.IsDir() && isContainerCgroup(e.Name(), containerID) {
			return filepath.Join(podDir, e.Name()), nil
		}
	}
	return "", fmt.Errorf("no cgroup of container %s in %s", containerID, podDir)
}

// readMemory reads a container cgroup's working set and limit.
func readMemory(dir string, v2 bool) (Memory, error) {
	usageFile, limitFile, inactiveKey := "memory.usage_in_bytes", "memory.limit_in_bytes", "total_inactive_file"
	if v2 {
		usageFile, limitFile, inactiveKey = "memory.current", "memory.max", "inactive_file"
	}
	usage, err := readUint(filepath.Join(dir, usageFile))
	if err != nil {
		return Memory{}, err
	}
	inactive, err := statValue(filepath.Join(dir, "memory.stat"), inactiveKey)
	if err != nil {
		return Memory{}, err
	}
	m := Memory{Cgroup: dir}
	if usage > inactive {
		m.WorkingSet = usage - inactive
	}
	raw, err := os.ReadFile(filepath.Join(dir, limitFile))
	if err != nil {
		return Memory{}, fmt.Errorf("read memory limit: %w", err)
	}
	s := strings.TrimSpace(string(raw))
	if s != "max" {
		limit, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("memory limit %s: %q is not a number", filepath.Join(dir, limitFile), s)
		}
		if v2 || limit < unlimitedV1 {
			m.Limit = limit
		}
	}
	return m, nil
}

func readUint(path string) (uint64, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read memory usage: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number", path, strings.TrimSpace(string(raw)))
	}
	return v, nil
}

// statValue returns one key of a memory.stat file ("<key> <value>" lines).
func statValue(path, key string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read memory stats: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %s %q is not a number", path, key, v)
			}
			return n, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return 0, fmt.Errorf("%s has no %s line", path, key)
}
