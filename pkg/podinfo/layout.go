// Package podinfo describes a pod inside its keeplog directory: who it was (pod.yaml, pod.txt), one directory per
// container so that `subPath: <container>` works, how it ended (status.yaml, ended.txt), and a copy of the stdout/stderr
// logs kubelet keeps under /var/log/pods and deletes with the pod. It also annotates the PV with the pods it served and
// reads the pod from the API with a bounded timeout.
//
// Everything is injected (clients, clock, options); nothing is global. The node plugin runs as root on a directory the
// pod can write in, so every path below the pod directory is opened relative to a directory descriptor with
// O_NOFOLLOW: a symlink the pod planted is never followed, and a directory renamed away by the pod mid-call does not
// redirect a write.
//
// # Layout (a contract for log collectors and humans)
//
//	<root>/<namespace>_<pod>_<uid>/        the pod directory (created by pkg/store, mounted into the pod)
//	    <container>/                       one per init and regular container, writable by that container's user
//	    .keeplog/                          keeplog's own files: root:root 0755, files root:root 0644
//	        pod.yaml                       the pod as the API returned it, minus managedFields, env values redacted
//	        pod.txt                        a human summary (owner chain, images, resources, QoS, ...)
//	        status.yaml                    at unpublish: each container's final state (machine readable)
//	        ended.txt                      at unpublish: the same, for humans
//	        logs/<container>/<file>        kubelet's stdout/stderr files, same names as in /var/log/pods/<pod>/<container>/:
//	                                       <restart>.log (CRI format), <restart>.log.<timestamp> and .gz rotated files
//	                                       as-is; <name>.partial-<unix-nanos> holds the start of a file that was
//	                                       rotated away between two copies (its full content is in a .gz beside it)
//
// # Why .keeplog/ and not the pod directory itself
//
// The pod can create, rename and delete entries of its own directory (it is mode 0777, or group-writable through
// fsGroup). Files written directly there could be deleted or replaced by the pod at any time, and their names would
// collide with the application's own files. In a root-owned 0755 sub-directory, a pod running as non-root (the usual
// case, and every OpenShift restricted pod) can read keeplog's files but cannot change, delete or add one. What it
// can still do is rename the whole .keeplog/ aside inside its own directory and create a look-alike: that look-alike
// is owned by the pod's UID, not root, so it is detectable, and keeplog checks the owner every time it opens
// .keeplog/: a .keeplog/ not owned by root is moved aside to .keeplog.untrusted-<unix-nanos> and a fresh one made.
// keeplog's CSIDriver has fsGroupPolicy None. With File (an admin's choice), kubelet itself chowns the whole volume
// to the fsGroup and adds group write after each mount; keeplog takes .keeplog/ back (root:root 0755, its files 0644)
// each time it writes there.
// A pod running as UID 0 without a user namespace can forge anything in its own directory, keeplog's files included.
//
// The copies are also hard-linked into <root>/.pods/<ns>_<pod>_<uid>/<container>/ (api.PodLogsDir), kubelet's
// own layout, which is what collectors read (api.CollectStdoutGlob: the collector contract); the contract's globs exclude
// .keeplog* so that nothing in here, stdout copies included, is ingested from the pod directory.
package podinfo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/safefs"
	"github.com/keeplog/keeplog/pkg/api"
)

// Modes of keeplog's own directory and files inside the pod directory.
const (
	keeplogDirMode  = 0o755
	keeplogFileMode = 0o644
)

// openPodDir opens the pod directory. Its parent (keeplog's root) is trusted: pods cannot write there; the last
// component is opened with O_NOFOLLOW, so a pod directory replaced by a symlink is refused.
func openPodDir(podDir string) (*os.File, error) {
	if !filepath.IsAbs(podDir) || filepath.Clean(podDir) != podDir || podDir == "/" {
		return nil, fmt.Errorf("pod directory %q must be a clean absolute path", podDir)
	}
	parent, err := safefs.OpenDir(filepath.Dir(podDir))
	if err != nil {
		return nil, fmt.Errorf("open parent of pod directory %s: %w", podDir, err)
	}
	defer parent.Close()
	return safefs.OpenDirAt(parent, filepath.Base(podDir), false)
}

// rootOwn makes an open file or directory root:root with the given mode, through its descriptor.
func rootOwn(f *os.File, mode uint32) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	if st.Uid != 0 || st.Gid != 0 {
		if err := unix.Fchown(int(f.Fd()), 0, 0); err != nil {
			return fmt.Errorf("chown %s to root:root: %w", f.Name(), err)
		}
	}
	if st.Mode&0o7777 != mode {
		if err := unix.Fchmod(int(f.Fd()), mode); err != nil {
			return fmt.Errorf("chmod %s to %o: %w", f.Name(), mode, err)
		}
	}
	return nil
}

// openKeeplogDir opens (creating it when missing) <pod>/.keeplog/ and makes sure it is keeplog's: a real directory
// owned by root. Anything else under that name (a symlink, a file, a directory the pod made) is moved aside to
// .keeplog.untrusted-<unix-nanos> and a fresh directory is made. A root-owned one with other owner group or mode
// (kubelet's fsGroup walk) is taken back to root:root 0755, and so are the regular files directly in it.
func openKeeplogDir(pod *os.File, now time.Time) (*os.File, error) {
	for attempt := 0; attempt < 3; attempt++ {
		d, err := safefs.OpenDirAt(pod, api.KeeplogDir, true)
		if err == nil {
			var st unix.Stat_t
			if err := unix.Fstat(int(d.Fd()), &st); err != nil {
				d.Close()
				return nil, fmt.Errorf("stat %s: %w", d.Name(), err)
			}
			if st.Uid == 0 {
				if err := rootOwn(d, keeplogDirMode); err != nil {
					d.Close()
					return nil, err
				}
				if err := rootOwnEntries(d); err != nil {
					d.Close()
					return nil, err
				}
				return d, nil
			}
			d.Close()
		}
		// Not keeplog's: a symlink, a non-directory, or a directory owned by someone else. Move it aside, keep it.
		aside := api.UntrustedKeeplogDirPrefix + strconv.FormatInt(now.UnixNano(), 10) + "-" + strconv.Itoa(attempt)
		if rerr := unix.Renameat(int(pod.Fd()), api.KeeplogDir, int(pod.Fd()), aside); rerr != nil && !errors.Is(rerr, unix.ENOENT) {
			return nil, fmt.Errorf("move untrusted %s aside to %s: %w (open: %v)", filepath.Join(pod.Name(), api.KeeplogDir), aside, rerr, err)
		}
	}
	return nil, fmt.Errorf("could not obtain a root-owned %s", filepath.Join(pod.Name(), api.KeeplogDir))
}

// rootOwnEntries resets owner and mode of the regular files and directories directly in dir, through their
// descriptors. Only what is proven a regular file (safefs.OpenFileAt: typed on an O_PATH descriptor first) or a
// directory on dir's mount (safefs.OpenSubdirAt) is opened: a symlink, device node, FIFO or socket a root pod
// planted is left alone and never opened, and neither is a mount.
func rootOwnEntries(dir *os.File) error {
	names, err := safefs.ReadDirNames(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		f, mode := openOwnable(dir, name)
		if f == nil {
			continue
		}
		err := rootOwn(f, mode)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// openOwnable opens dir/name when it is a regular file or a directory on dir's mount, with the mode keeplog gives
// it; nil for anything else (or gone meanwhile).
func openOwnable(dir *os.File, name string) (*os.File, uint32) {
	st, err := safefs.Lstat(dir, name)
	if err != nil {
		return nil, 0
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if f, _, err := safefs.OpenFileAt(dir, name, unix.O_RDONLY); err == nil {
			return f, keeplogFileMode
		}
	case unix.S_IFDIR:
		if f, err := safefs.OpenSubdirAt(dir, name); err == nil {
			return f, keeplogDirMode
		}
	}
	return nil, 0
}

// writeFileAt writes data to dir/name atomically (safefs.WriteFileAt), root:root 0644.
func writeFileAt(dir *os.File, name string, data []byte) error {
	return safefs.WriteFileAt(dir, name, data, keeplogFileMode, func(f *os.File) error { return rootOwn(f, keeplogFileMode) })
}

// openRegularAt opens dir/name for reading, only a regular file and never through a symlink (safefs.OpenFileAt).
func openRegularAt(dir *os.File, name string) (*os.File, error) {
	f, _, err := safefs.OpenFileAt(dir, name, unix.O_RDONLY)
	return f, err
}
