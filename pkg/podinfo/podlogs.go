package podinfo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/safefs"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// isKubeletLogName is true for the names kubelet gives container log files: <restart>.log and its rotated
// <restart>.log.<YYYYMMDD-hhmmss>[.gz]. keeplog's own .partial-* files are not (their content is in a .gz beside them).
func isKubeletLogName(name string) bool {
	return activeLogName.MatchString(name) || rotatedLogName.MatchString(name)
}

// mirrorPodLogs makes <root>/.pods/<ns>_<pod>_<uid>/<container>/<file> (api.PodLogsDir) the same inodes as the
// copies in <podDir>/.keeplog/logs/<container>/<file>: hard links, so no byte is written twice and the tree costs no
// space. It is stateless and idempotent: a name whose link is already the copy's inode is left alone, a copy renamed
// at rotation gets its new name linked and the old name replaced atomically (link to a temporary name, rename over),
// and names the copies no longer have are unlinked. The caller holds the flock of logs.
//
// Only what safefs.OpenFileAt proves a regular file is linked, through its descriptor (linkat AT_EMPTY_PATH), so the
// inode linked is the one checked. <root> is trusted (pods cannot write there); every level below it is opened with
// O_NOFOLLOW. A pod directory on another filesystem than the root (EXDEV) is reported, never copied: pod directories
// are made by the store directly below the root.
func mirrorPodLogs(podDir string, ref store.PodRef, logs *os.File) error {
	containers, err := safefs.ReadDirNames(logs)
	if err != nil {
		return err
	}
	entry, err := openPodLogsEntry(filepath.Dir(podDir), ref.DirName())
	if err != nil {
		return err
	}
	defer entry.Close()
	var errs []error
	for _, c := range containers {
		if ValidateContainerName(c) != nil {
			continue
		}
		if err := mirrorContainer(logs, entry, c); err != nil {
			errs = append(errs, fmt.Errorf("link stdout/stderr of pod %s container %q into %s: %w", ref, c, entry.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// openPodLogsEntry opens (creating) <root>/.pods/<dir>/, root:root 0755 at each level so collectors can read it.
func openPodLogsEntry(root, dir string) (*os.File, error) {
	r, err := safefs.OpenDir(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	tree, err := openOwnedDir(r, api.PodLogsDir)
	if err != nil {
		return nil, err
	}
	defer tree.Close()
	return openOwnedDir(tree, dir)
}

// openOwnedDir opens (creating) dir/name, never through a symlink, and makes it root:root 0755.
func openOwnedDir(dir *os.File, name string) (*os.File, error) {
	d, err := safefs.OpenDirAt(dir, name, true)
	if err != nil {
		return nil, err
	}
	if err := rootOwn(d, keeplogDirMode); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func mirrorContainer(logs, entry *os.File, container string) error {
	src, err := safefs.OpenDirAt(logs, container, false)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := openOwnedDir(entry, container)
	if err != nil {
		return err
	}
	defer dst.Close()
	names, err := safefs.ReadDirNames(src)
	if err != nil {
		return err
	}
	want, err := linkAll(src, dst, names, nil)
	return errors.Join(err, unlinkOthers(dst, want))
}

// linkAll hard-links (linkInto) each kubelet log name among names (src's entries) into dst. A name that cannot be
// linked because dst is on another filesystem (EXDEV) is handed to fallback, if there is one (the stdout grace
// copies it). It returns the kubelet log names, linked or not, with every failure joined.
func linkAll(src, dst *os.File, names []string, fallback func(name string) error) (map[string]bool, error) {
	seen := map[string]bool{}
	var errs []error
	for _, n := range names {
		if !isKubeletLogName(n) {
			continue
		}
		seen[n] = true
		err := linkInto(src, dst, n)
		if fallback != nil && errors.Is(err, unix.EXDEV) {
			err = fallback(n)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return seen, errors.Join(errs...)
}

// linkInto makes dst/name a hard link of the regular file src/name, replacing whatever dst/name was.
func linkInto(src, dst *os.File, name string) error {
	f, st, err := safefs.OpenFileAt(src, name, unix.O_RDONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	if cur, err := safefs.Lstat(dst, name); err == nil && cur.Dev == st.Dev && cur.Ino == st.Ino {
		return nil
	}
	tmp := "." + name + api.PodLogsTempSuffix
	if err := unix.Unlinkat(int(dst.Fd()), tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove leftover %s: %w", filepath.Join(dst.Name(), tmp), err)
	}
	if err := unix.Linkat(int(f.Fd()), "", int(dst.Fd()), tmp, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("link %s to %s: %w", f.Name(), filepath.Join(dst.Name(), tmp), err)
	}
	if err := unix.Renameat(int(dst.Fd()), tmp, int(dst.Fd()), name); err != nil {
		_ = unix.Unlinkat(int(dst.Fd()), tmp, 0)
		return fmt.Errorf("rename %s to %s: %w", filepath.Join(dst.Name(), tmp), name, err)
	}
	return nil
}

// unlinkOthers removes the entries of dst that are not in want (names the copies no longer have, leftovers of an
// interrupted link). unlinkat without AT_REMOVEDIR never removes a directory and never touches a symlink's target.
func unlinkOthers(dst *os.File, want map[string]bool) error {
	names, err := safefs.ReadDirNames(dst)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		if want[n] {
			continue
		}
		if err := unix.Unlinkat(int(dst.Fd()), n, 0); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EISDIR) {
			errs = append(errs, fmt.Errorf("remove %s: %w", filepath.Join(dst.Name(), n), err))
		}
	}
	return errors.Join(errs...)
}

// withLockedLogs runs fn with <podDir>/.keeplog/logs open and flock'ed; nothing is run when there are no copies.
func (c *LogCopier) withLockedLogs(ctx context.Context, podDir string, fn func(logs *os.File) error) error {
	pd, err := openPodDir(podDir)
	if err != nil {
		return err
	}
	defer pd.Close()
	kd, err := openKeeplogDir(pd, c.clk.Now())
	if err != nil {
		return err
	}
	defer kd.Close()
	logs, err := safefs.OpenDirAt(kd, api.LogsDir, false)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer logs.Close()
	unlock, err := lockDir(ctx, logs)
	if err != nil {
		return err
	}
	defer unlock()
	return fn(logs)
}
