package podinfo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/safefs"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// Link hard-links the pod's current kubelet files <source>/<dir>/<container>/<n>.log[...] into
// <root>/.pods/<dir>/<container>/ under the same names (replacing a name whose inode kubelet changed, as at
// rotation), and keeps every name kubelet deleted: that is the grace. When the tree is on another filesystem than
// kubelet's files (EXDEV) the file is copied instead, incrementally (the LogCopier's copyFile: only what is new is
// appended). Only regular files are linked, through a descriptor of the inode proven regular; nothing is followed,
// and no directory on another mount than the source root is entered. A missing source is not an error.
func (g *Grace) Link(ctx context.Context, ref store.PodRef) error {
	root, err := safefs.OpenDir(g.copier.SourceRoot())
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer root.Close()
	realRoot, err := safefs.ResolvedPath(root)
	if err != nil {
		return err
	}
	src, err := safefs.OpenDirAt(root, ref.DirName(), false)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer src.Close()
	containers, err := safefs.ReadDirNames(src)
	if err != nil {
		return err
	}
	var entry *os.File
	var errs []error
	for _, c := range containers {
		if ValidateContainerName(c) != nil {
			continue
		}
		if entry == nil {
			if entry, err = openPodLogsEntry(g.cfg.Root, ref.DirName()); err != nil {
				return err
			}
			defer entry.Close()
		}
		if err := g.linkContainer(ctx, root, realRoot, src, entry, c); err != nil {
			errs = append(errs, fmt.Errorf("stdout grace of pod %s container %q: %w", ref, c, err))
		}
	}
	return errors.Join(errs...)
}

func (g *Grace) linkContainer(ctx context.Context, root *os.File, realRoot string, pod, entry *os.File, c string) error {
	src, err := safefs.OpenDirAt(pod, c, false)
	if err != nil {
		return err
	}
	defer src.Close()
	if same, err := safefs.SameMount(root, src); err != nil || !same {
		return errors.Join(err, fmt.Errorf("%s is not on the mount of %s: not entered", src.Name(), root.Name()))
	}
	dst, err := openOwnedDir(entry, c)
	if err != nil {
		return err
	}
	defer dst.Close()
	names, err := safefs.ReadDirNames(src)
	if err != nil {
		return err
	}
	inSource, err := linkAll(src, dst, names, func(n string) error {
		_, err := g.copier.copyFile(ctx, realRoot, src, dst, n)
		return err
	})
	return errors.Join(err, dropSuperseded(dst, inSource))
}

// dropSuperseded unlinks keeplog's name of a rotated file X once kubelet has only X.gz (linked too): its content
// is in the .gz, and the name was what kept the uncompressed inode alive.
func dropSuperseded(dst *os.File, inSource map[string]bool) error {
	var errs []error
	for n := range inSource {
		plain, ok := strings.CutSuffix(n, ".gz")
		if !ok || inSource[plain] || !safefs.ExistsAt(dst, plain) {
			continue
		}
		if err := unix.Unlinkat(int(dst.Fd()), plain, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove %s/%s, superseded by %s: %w", dst.Name(), plain, n, err))
		}
	}
	return errors.Join(errs...)
}

// Sweep records the end of entries whose pod is no longer on the node (also those a restarted plugin finds) and
// deletes, through the store, those whose end is older than RetainFor. Entries that belong to a pod directory (pods
// with a keeplog volume) are left to the garbage collector's deletion of that directory.
func (g *Grace) Sweep(ctx context.Context) {
	dirs, err := g.deps.Store.ListPodLogs()
	if err != nil {
		g.deps.Log.Error(err, "Stdout grace: could not list the kubelet-layout tree")
		return
	}
	now := g.cfg.Clock.Now()
	for _, dir := range dirs {
		if ctx.Err() != nil {
			return
		}
		ref, err := store.ParsePodDirName(dir)
		if err != nil {
			continue
		}
		if _, err := os.Lstat(g.cfg.Root + "/" + dir); err == nil {
			continue
		}
		g.mu.Lock()
		_, linking := g.selected[dir]
		g.mu.Unlock()
		if _, onNode := g.deps.Pod(ref); onNode || linking {
			continue
		}
		ended, ok := g.endedAt(dir)
		if !ok {
			if err := g.writeEnded(ref); err != nil {
				g.deps.Log.Error(err, "Could not record the end of a pod for the stdout grace", "pod", ref.String())
			}
			continue
		}
		if now.Sub(ended) < g.cfg.RetainFor {
			continue
		}
		if err := g.deps.Store.DeleteOrphanPodLogs(dir); err != nil {
			g.deps.Log.Error(err, "Stdout grace: could not delete an expired entry", "entry", dir)
			continue
		}
		g.deps.Log.V(2).Info("Stdout grace: deleted an expired entry", "pod", ref.String(), "ended", ended)
	}
}

// endedAt is the time written in <root>/.pods/<dir>/ended (by writeEnded, with the injected clock).
func (g *Grace) endedAt(dir string) (t time.Time, ok bool) {
	entry, err := openPodLogsEntry(g.cfg.Root, dir)
	if err != nil {
		return t, false
	}
	defer entry.Close()
	data, err := readFileAt(entry, api.PodLogsEndedFile, 64)
	if err != nil {
		return t, false
	}
	t, err = time.Parse(time.RFC3339, strings.TrimSpace(string(data)))
	return t, err == nil
}
