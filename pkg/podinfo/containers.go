package podinfo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keeplog/keeplog/internal/safefs"
)

// ValidateContainerName checks a container name before it becomes a directory name: a DNS-1123 label (at most 63
// characters, lower-case letters, digits and '-'), as the API server requires. Such a name cannot be ".", "..",
// ".keeplog" or contain '/'.
func ValidateContainerName(name string) error {
	if len(validation.IsDNS1123Label(name)) > 0 {
		return fmt.Errorf("container name %q is not a DNS-1123 label (lower-case letters, digits, '-', at most 63 characters)", name)
	}
	return nil
}

// Rules for a container's directory, from the pod's security context.
const (
	RuleFSGroup    = "fsGroup"    // group fsGroup, owner runAsUser (or root), 2775
	RuleRunAsUser  = "runAsUser"  // owner runAsUser, group runAsGroup (or 0), 2775
	RuleRunAsGroup = "runAsGroup" // owner root, group runAsGroup, 2775
	RuleAnyUser    = "anyUser"    // root:root 0777: nothing known, any UID must write
)

// ContainerDir is one per-container directory and the ownership it was given.
type ContainerDir struct {
	Name string
	Path string
	UID  int
	GID  int
	Mode os.FileMode // permission bits plus os.ModeSetgid
	Rule string
}

// ContainerDirOwnership decides owner, group and mode of a container's directory.
//
// The user a container runs as is its securityContext.runAsUser, else the pod's; its group runAsGroup likewise; the
// pod's fsGroup is a supplementary group of every container. The directory must be writable by that user:
//
//   - fsGroup set: group fsGroup, mode 2775 (setgid, so files made inside inherit fsGroup, as kubelet does for
//     volumes), owner runAsUser when set, else root. Every process of the pod has fsGroup, so all can write.
//   - else runAsUser set: owner runAsUser, group runAsGroup (else 0), mode 2775.
//   - else runAsGroup set: owner root, group runAsGroup, mode 2775: the process has that primary group.
//   - none of them: root:root 0777. The UID is unknown to keeplog: the image's USER, or a random UID from an
//     OpenShift restricted SCC (whose primary group is 0, but a plain image USER 1000:1000 is not in group 0), so
//     only a world-writable directory works for every case; 2775 root:0 would fail the plain Kubernetes non-root image.
//     This grants nothing new: the pod directory itself is 0777 already and the directory is only reachable through
//     the pod's own mount or as root on the node (keeplog's root is 0755, root-owned).
func ContainerDirOwnership(pod *corev1.Pod, c *corev1.Container) (uid, gid int, mode os.FileMode, rule string) {
	var runAsUser, runAsGroup, fsGroup *int64
	if sc := pod.Spec.SecurityContext; sc != nil {
		runAsUser, runAsGroup, fsGroup = sc.RunAsUser, sc.RunAsGroup, sc.FSGroup
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			runAsUser = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			runAsGroup = sc.RunAsGroup
		}
	}
	setgid2775 := os.ModeSetgid | 0o775
	switch {
	case fsGroup != nil:
		if runAsUser != nil {
			uid = int(*runAsUser)
		}
		return uid, int(*fsGroup), setgid2775, RuleFSGroup
	case runAsUser != nil:
		if runAsGroup != nil {
			gid = int(*runAsGroup)
		}
		return int(*runAsUser), gid, setgid2775, RuleRunAsUser
	case runAsGroup != nil:
		return 0, int(*runAsGroup), setgid2775, RuleRunAsGroup
	}
	return 0, 0, 0o777, RuleAnyUser
}

func unixMode(m os.FileMode) uint32 {
	mode := uint32(m.Perm())
	if m&os.ModeSetgid != 0 {
		mode |= unix.S_ISGID
	}
	if m&os.ModeSetuid != 0 {
		mode |= unix.S_ISUID
	}
	if m&os.ModeSticky != 0 {
		mode |= unix.S_ISVTX
	}
	return mode
}

// EnsureContainerDirs makes <podDir>/<container>/ for every init and regular container of pod, with the owner and mode
// of ContainerDirOwnership, so that `subPath: <container>` works without an init container. An existing directory
// gets its owner and mode set again (idempotent); the application's files inside are not touched. Each directory is
// opened with O_NOFOLLOW|O_DIRECTORY and changed through that descriptor (fchown/fchmod), so a symlink named like a
// container is refused, never followed, and a directory swapped for a symlink meanwhile cannot redirect the chown.
// A refused container does not stop the others: the result lists those made, the error names each one refused.
func (w *Writer) EnsureContainerDirs(podDir string, pod *corev1.Pod) ([]ContainerDir, error) {
	if pod == nil {
		return nil, errors.New("container directories: no pod")
	}
	if err := checkPodDir(podDir, refOf(pod)); err != nil {
		return nil, fmt.Errorf("container directories: %w", err)
	}
	pd, err := openPodDir(podDir)
	if err != nil {
		return nil, err
	}
	defer pd.Close()
	var (
		out  []ContainerDir
		errs []error
	)
	all := make([]*corev1.Container, 0, len(pod.Spec.InitContainers)+len(pod.Spec.Containers))
	for i := range pod.Spec.InitContainers {
		all = append(all, &pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		all = append(all, &pod.Spec.Containers[i])
	}
	for _, c := range all {
		cd, err := ensureContainerDir(pd, pod, c)
		if err != nil {
			errs = append(errs, fmt.Errorf("pod %s container %q: %w", refOf(pod), c.Name, err))
			continue
		}
		out = append(out, cd)
	}
	return out, errors.Join(errs...)
}

func ensureContainerDir(pd *os.File, pod *corev1.Pod, c *corev1.Container) (ContainerDir, error) {
	if err := ValidateContainerName(c.Name); err != nil {
		return ContainerDir{}, err
	}
	d, err := safefs.OpenDirAt(pd, c.Name, true)
	if err != nil {
		return ContainerDir{}, err
	}
	defer d.Close()
	uid, gid, mode, rule := ContainerDirOwnership(pod, c)
	if err := unix.Fchown(int(d.Fd()), uid, gid); err != nil {
		return ContainerDir{}, fmt.Errorf("chown %s to %d:%d: %w", d.Name(), uid, gid, err)
	}
	// After the chown: chown clears the setgid bit.
	if err := unix.Fchmod(int(d.Fd()), unixMode(mode)); err != nil {
		return ContainerDir{}, fmt.Errorf("chmod %s to %v: %w", d.Name(), mode, err)
	}
	return ContainerDir{Name: c.Name, Path: filepath.Join(pd.Name(), c.Name), UID: uid, GID: gid, Mode: mode, Rule: rule}, nil
}
