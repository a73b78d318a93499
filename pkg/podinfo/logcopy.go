package podinfo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/safefs"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// DefaultLogSourceRoot is where kubelet keeps container stdout/stderr.
const DefaultLogSourceRoot = "/var/log/pods"

var (
	// <restart>.log: the file the runtime writes now.
	activeLogName = regexp.MustCompile(`^[0-9]+\.log$`)
	// <restart>.log.<YYYYMMDD-hhmmss>[.gz]: kubelet's rotated files (the newest stays uncompressed).
	rotatedLogName = regexp.MustCompile(`^[0-9]+\.log\.[0-9]{8}-[0-9]{6}(\.gz)?$`)
)

const (
	copyChunk      = 1 << 20
	prefixWindow   = 4096
	lockRetryDelay = 20 * time.Millisecond
)

// LogCopier copies kubelet's container log files of a pod, <source>/<ns>_<pod>_<uid>/<container>/<files>, into
// <podDir>/.keeplog/logs/<container>/<files>, incrementally, and hard-links them into the kubelet-layout tree
// <root>/.pods/<ns>_<pod>_<uid>/<container>/<files> that collectors read (api.PodLogsDir; the contract is in pkg/api):
//
//   - a file is identified by its content: the copy is taken to be the same file as the source when it is a prefix of
//     it (its first and last 4 KiB match the source at the same offsets; CRI log lines start with a nanosecond
//     timestamp, so two different files do not share them), and only the bytes past the copy's size are appended.
//     No state is kept besides the copies, so a restarted plugin continues where it stopped and a second call copies
//     nothing.
//   - rotation: when <n>.log was rotated since the last copy, the copy of <n>.log is the start of an uncompressed
//     <n>.log.<timestamp>; it is renamed to that name and completed, and the new <n>.log is copied from its start.
//     If kubelet compressed the rotated file before keeplog saw it, the old copy is kept as <n>.log.partial-<nanos>
//     and the .gz is copied whole, as-is. Once X.gz is copied whole and kubelet has removed X, keeplog's copy of X
//     (a prefix of what X.gz holds) is removed too.
//   - only regular files with one link, opened relative to directory descriptors with O_NOFOLLOW, are read; their
//     resolved path (/proc/self/fd) must stay below the source root. Symlinks anywhere below the source root are
//     refused. Copies are written root:root 0644 into keeplog's root-owned directory, never through a symlink.
//
// Calls for the same pod directory are serialised with flock on .keeplog/logs (also across processes).
type LogCopier struct {
	source string
	clk    clock.PassiveClock
}

// CopyStats says what one Copy did.
type CopyStats struct {
	Containers int   // container directories found at the source
	Files      int   // files that received bytes
	Bytes      int64 // bytes appended
	// SourceMissing: kubelet has no log directory for the pod (already deleted, or never had one).
	SourceMissing bool
}

// NewLogCopier returns a copier reading below sourceRoot ("" means DefaultLogSourceRoot); clk (nil: the real
// clock) dates what it moves aside.
// sourceRoot itself may be a symlink (it is configuration); nothing below it may.
func NewLogCopier(sourceRoot string, clk clock.PassiveClock) (*LogCopier, error) {
	if sourceRoot == "" {
		sourceRoot = DefaultLogSourceRoot
	}
	if !filepath.IsAbs(sourceRoot) || filepath.Clean(sourceRoot) != sourceRoot || sourceRoot == "/" {
		return nil, fmt.Errorf("log source root %q must be a clean absolute path other than /", sourceRoot)
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &LogCopier{source: sourceRoot, clk: clk}, nil
}

// SourceRoot is the directory logs are read from.
func (c *LogCopier) SourceRoot() string { return c.source }

// Copy copies what is new of pod ref's log files into podDir. Unpublish alone is not enough: kubelet removes the dead
// containers of a deleted pod, and their log files with them, once the pod worker reports it terminated
// (Kubelet.cleanUpContainersInPod on a ContainerDied event, pkg/kubelet/kubelet.go in v1.34), which can happen before
// or while the volumes are unmounted. Call it periodically while the pod runs (rotation deletes old files too), as
// soon as a container terminates or the pod gets a deletionTimestamp when the caller watches pods, and at unpublish.
// A missing source is not an error (SourceMissing). A file that cannot be copied does not stop the others; the error
// names each one. ctx bounds the work; what is copied stays.
//
// After the copy, the copies are hard-linked into the kubelet-layout tree <root>/.pods/<dir>/ (mirrorPodLogs), also
// when the source is gone, so that tree always shows what the copies hold.
func (c *LogCopier) Copy(ctx context.Context, podDir string, ref store.PodRef) (CopyStats, error) {
	if err := checkPodDir(podDir, ref); err != nil {
		return CopyStats{}, fmt.Errorf("copy logs: %w", err)
	}
	stats, err := c.copyAll(ctx, podDir, ref)
	merr := c.withLockedLogs(ctx, podDir, func(logs *os.File) error { return mirrorPodLogs(podDir, ref, logs) })
	return stats, errors.Join(err, merr)
}

// copyAll is Copy without the links into the kubelet-layout tree.
func (c *LogCopier) copyAll(ctx context.Context, podDir string, ref store.PodRef) (CopyStats, error) {
	var stats CopyStats
	rootFd, err := unix.Open(c.source, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			stats.SourceMissing = true
			return stats, nil
		}
		return stats, fmt.Errorf("open log source root %s: %w", c.source, err)
	}
	root := os.NewFile(uintptr(rootFd), c.source)
	defer root.Close()
	realRoot, err := safefs.ResolvedPath(root)
	if err != nil {
		return stats, err
	}
	srcPod, err := safefs.OpenDirAt(root, ref.DirName(), false)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			stats.SourceMissing = true
			return stats, nil
		}
		return stats, fmt.Errorf("copy logs of pod %s: %w", ref, err)
	}
	defer srcPod.Close()

	pd, err := openPodDir(podDir)
	if err != nil {
		return stats, err
	}
	defer pd.Close()
	kd, err := openKeeplogDir(pd, c.clk.Now())
	if err != nil {
		return stats, err
	}
	defer kd.Close()
	logs, err := safefs.OpenDirAt(kd, api.LogsDir, true)
	if err != nil {
		return stats, err
	}
	defer logs.Close()
	if err := rootOwn(logs, keeplogDirMode); err != nil {
		return stats, err
	}
	unlock, err := lockDir(ctx, logs)
	if err != nil {
		return stats, err
	}
	defer unlock()

	names, err := safefs.ReadDirNames(srcPod)
	if err != nil {
		return stats, err
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("copy logs of pod %s: %w", ref, ctx.Err()))
			break
		}
		if ValidateContainerName(name) != nil {
			continue
		}
		stats.Containers++
		if err := c.copyContainer(ctx, realRoot, srcPod, logs, name, &stats); err != nil {
			errs = append(errs, fmt.Errorf("copy logs of pod %s container %q: %w", ref, name, err))
		}
	}
	return stats, errors.Join(errs...)
}

func (c *LogCopier) copyContainer(ctx context.Context, realRoot string, srcPod, logs *os.File, name string, stats *CopyStats) error {
	src, err := safefs.OpenDirAt(srcPod, name, false)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := safefs.OpenDirAt(logs, name, true)
	if err != nil {
		return err
	}
	defer dst.Close()
	if err := rootOwn(dst, keeplogDirMode); err != nil {
		return err
	}
	if err := rootOwnEntries(dst); err != nil {
		return err
	}
	srcNames, err := safefs.ReadDirNames(src)
	if err != nil {
		return err
	}
	var files []string
	inSource := map[string]bool{}
	for _, n := range srcNames {
		if activeLogName.MatchString(n) || rotatedLogName.MatchString(n) {
			files = append(files, n)
			inSource[n] = true
		}
	}
	sort.Strings(files)
	var errs []error
	// Rotation first: move the copy of a rotated <n>.log to the name its content now has at the source.
	dstNames, err := safefs.ReadDirNames(dst)
	if err != nil {
		return err
	}
	for _, n := range dstNames {
		if activeLogName.MatchString(n) {
			if err := c.followRotation(realRoot, src, dst, n, files, inSource); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, n := range files {
		if ctx.Err() != nil {
			return errors.Join(append(errs, ctx.Err())...)
		}
		written, err := c.copyFile(ctx, realRoot, src, dst, n)
		if written > 0 {
			stats.Files++
			stats.Bytes += written
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// X.gz complete and X gone at the source: keeplog's copy of X is a prefix of X.gz's content.
		if plain, ok := strings.CutSuffix(n, ".gz"); ok && !inSource[plain] && safefs.ExistsAt(dst, plain) {
			if err := unix.Unlinkat(int(dst.Fd()), plain, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("remove %s, superseded by %s: %w", filepath.Join(dst.Name(), plain), n, err))
			}
		}
	}
	return errors.Join(errs...)
}

// followRotation handles the copy of an active file <n>.log whose source is no longer the file it was copied from.
func (c *LogCopier) followRotation(realRoot string, src, dst *os.File, name string, files []string, inSource map[string]bool) error {
	cp, err := openRegularAt(dst, name)
	if errors.Is(err, unix.ELOOP) {
		return nil // a symlink is not a copy: copyFile drops it
	}
	if err != nil {
		return err
	}
	defer cp.Close()
	if inSource[name] {
		s, err := c.openSource(realRoot, src, name)
		if err != nil {
			return err
		}
		same, err := isPrefix(cp, s)
		s.Close()
		if err != nil || same {
			return err
		}
	}
	for _, n := range files {
		if !strings.HasPrefix(n, name+".") || strings.HasSuffix(n, ".gz") || safefs.ExistsAt(dst, n) {
			continue
		}
		s, err := c.openSource(realRoot, src, n)
		if err != nil {
			continue
		}
		same, err := isPrefix(cp, s)
		s.Close()
		if err == nil && same {
			if err := unix.Renameat(int(dst.Fd()), name, int(dst.Fd()), n); err != nil {
				return fmt.Errorf("rename copy %s to rotated name %s: %w", filepath.Join(dst.Name(), name), n, err)
			}
			return nil
		}
	}
	if !inSource[name] {
		return nil // rotation under way (renamed, not yet reopened) or the file is gone: keep the copy as it is
	}
	return c.setAside(dst, name)
}

// setAside keeps a copy that is not a prefix of its source any more under <name>.partial-<nanos>.
func (c *LogCopier) setAside(dst *os.File, name string) error {
	aside := name + ".partial-" + strconv.FormatInt(c.clk.Now().UnixNano(), 10)
	if err := unix.Renameat(int(dst.Fd()), name, int(dst.Fd()), aside); err != nil {
		return fmt.Errorf("keep superseded copy %s as %s: %w", filepath.Join(dst.Name(), name), aside, err)
	}
	return nil
}

// openSource opens a source log file: regular, one link, no symlink anywhere, resolved path below the source root.
func (c *LogCopier) openSource(realRoot string, dir *os.File, name string) (*os.File, error) {
	f, err := openRegularAt(dir, name)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	if st.Nlink != 1 {
		f.Close()
		return nil, fmt.Errorf("%s has %d hard links; keeplog copies only files with one", f.Name(), st.Nlink)
	}
	resolved, err := safefs.ResolvedPath(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if !strings.HasPrefix(resolved, realRoot+"/") {
		f.Close()
		return nil, fmt.Errorf("%s resolves to %s, outside the log source root %s", f.Name(), resolved, realRoot)
	}
	return f, nil
}

// copyFile appends to dst/name what src/name has beyond the copy's size. It returns the bytes written.
func (c *LogCopier) copyFile(ctx context.Context, realRoot string, srcDir, dstDir *os.File, name string) (int64, error) {
	s, err := c.openSource(realRoot, srcDir, name)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	var sst unix.Stat_t
	if err := unix.Fstat(int(s.Fd()), &sst); err != nil {
		return 0, fmt.Errorf("stat %s: %w", s.Name(), err)
	}
	size := sst.Size // copy up to the size seen now; a file that grows is continued next time
	d, _, err := safefs.OpenFileAt(dstDir, name, unix.O_RDWR)
	if errors.Is(err, unix.ELOOP) {
		// Only root writes here; a symlink is a leftover of tampering before .keeplog/ was taken back. Drop the link
		// itself (unlinkat never touches a target) and copy afresh.
		if uerr := unix.Unlinkat(int(dstDir.Fd()), name, 0); uerr != nil {
			return 0, fmt.Errorf("remove symlink %s: %w", filepath.Join(dstDir.Name(), name), uerr)
		}
		err = unix.ENOENT
	}
	if err == nil {
		same, perr := isPrefix(d, s)
		if perr != nil {
			d.Close()
			return 0, perr
		}
		if !same {
			d.Close()
			if err := c.setAside(dstDir, name); err != nil {
				return 0, err
			}
			d, err = createAt(dstDir, name)
		}
	} else if errors.Is(err, unix.ENOENT) {
		d, err = createAt(dstDir, name)
	}
	if err != nil {
		return 0, err
	}
	defer d.Close()
	var dst unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &dst); err != nil {
		return 0, fmt.Errorf("stat %s: %w", d.Name(), err)
	}
	if dst.Size >= size {
		return 0, nil
	}
	if _, err := d.Seek(dst.Size, io.SeekStart); err != nil {
		return 0, fmt.Errorf("seek %s: %w", d.Name(), err)
	}
	r := io.NewSectionReader(s, dst.Size, size-dst.Size)
	var written int64
	buf := make([]byte, copyChunk)
	for {
		if err := ctx.Err(); err != nil {
			return written, fmt.Errorf("copy %s: %w", s.Name(), err)
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			m, werr := d.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, fmt.Errorf("write %s: %w", d.Name(), werr)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return written, fmt.Errorf("read %s: %w", s.Name(), rerr)
		}
	}
	if err := d.Sync(); err != nil {
		return written, fmt.Errorf("sync %s: %w", d.Name(), err)
	}
	return written, nil
}

// isPrefix reports whether the content of cp is the start of src: sizes allow it and the first and last
// prefixWindow bytes of cp equal src's at the same offsets (all of it when cp is small).
func isPrefix(cp, src *os.File) (bool, error) {
	var a, b unix.Stat_t
	if err := unix.Fstat(int(cp.Fd()), &a); err != nil {
		return false, fmt.Errorf("stat %s: %w", cp.Name(), err)
	}
	if err := unix.Fstat(int(src.Fd()), &b); err != nil {
		return false, fmt.Errorf("stat %s: %w", src.Name(), err)
	}
	if a.Size > b.Size {
		return false, nil
	}
	ranges := [][2]int64{{0, min(a.Size, prefixWindow)}}
	if a.Size > prefixWindow {
		start := max(prefixWindow, a.Size-prefixWindow)
		ranges = append(ranges, [2]int64{start, a.Size - start})
	}
	x, y := make([]byte, prefixWindow), make([]byte, prefixWindow)
	for _, r := range ranges {
		if r[1] == 0 {
			continue
		}
		if _, err := cp.ReadAt(x[:r[1]], r[0]); err != nil {
			return false, fmt.Errorf("read %s: %w", cp.Name(), err)
		}
		if _, err := src.ReadAt(y[:r[1]], r[0]); err != nil {
			return false, fmt.Errorf("read %s: %w", src.Name(), err)
		}
		if string(x[:r[1]]) != string(y[:r[1]]) {
			return false, nil
		}
	}
	return true, nil
}

// createAt creates a new copy root:root 0644; an existing entry, symlink or not, is never reused (safefs.CreateAt).
func createAt(dir *os.File, name string) (*os.File, error) {
	f, err := safefs.CreateAt(dir, name, keeplogFileMode)
	if err != nil {
		return nil, err
	}
	if err := rootOwn(f, keeplogFileMode); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// lockDir takes an exclusive flock on dir, waiting until ctx is done.
func lockDir(ctx context.Context, dir *os.File) (func(), error) {
	for {
		err := unix.Flock(int(dir.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = unix.Flock(int(dir.Fd()), unix.LOCK_UN) }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", dir.Name(), err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("lock %s: %w", dir.Name(), ctx.Err())
		case <-time.After(lockRetryDelay):
		}
	}
}
