package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/safefs"
)

// childPath joins one already-validated component to base and checks that the result is a direct child of base.
func childPath(base, name string) (string, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("%q is not a single path component", name)
	}
	p := filepath.Join(base, name)
	if filepath.Dir(p) != filepath.Clean(base) {
		return "", fmt.Errorf("%q does not stay directly below %q", name, base)
	}
	return p, nil
}

// checkRealDir fails unless path is a directory and not a symlink.
func checkRealDir(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symlink; keeplog never follows symlinks in its root", path)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", path)
	}
	return nil
}

// WriteJSONAtomic writes the record v (a JSON object, stamped with RecordFormat) to path so that a crash leaves
// either the old or the new content, never a mix: temp file in the same directory, fsync, rename, fsync of the
// directory.
func WriteJSONAtomic(path string, v any) error {
	data, err := json.Marshal(v)
	if err == nil {
		data, err = stampFormat(data)
	}
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return fmt.Errorf("create temp file for %s: %w", path, err)
	}
	tmp := f.Name()
	// Best effort: ENOENT after a successful rename; after a failed write the write's error is the one returned.
	defer func() { _ = os.Remove(tmp) }()
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, so that a rename or removal in it survives a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s for sync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// readJSON reads a record written by WriteJSONAtomic. A missing file is reported as ErrNotFound, a record of a
// newer format as ErrNewerFormat (CheckFormat).
func readJSON(path string, v any) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w", path, ErrNotFound)
		}
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := CheckFormat(path, data); err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// removeTree deletes path and everything below it (safefs.RemoveAllAt): never following a symlink (a link is removed
// itself, never its target), and never entering a directory on another mount than base's: a bind mount inside a pod
// directory, even one that appeared after checkNoMounts, stops the removal with an error wrapping ErrHoldsMount
// rather than being emptied. path must be a direct child of base, base itself is never removed.
func removeTree(base, path string) error {
	if filepath.Dir(filepath.Clean(path)) != filepath.Clean(base) {
		return fmt.Errorf("refusing to delete %s: not directly below %s", path, base)
	}
	b, err := safefs.OpenDir(base)
	if err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	defer b.Close()
	err = safefs.RemoveAllAt(b, filepath.Base(path))
	if errors.Is(err, safefs.ErrOtherMount) {
		return fmt.Errorf("%w: %w", ErrHoldsMount, err)
	}
	return err
}

// checkNoMounts refuses (ErrHoldsMount, naming the mount points) when anything is mounted at or below base/name, so
// that a directory holding a mount is kept whole rather than half deleted. A missing directory, or one that is not a
// real directory, passes: the caller's own checks handle those.
func checkNoMounts(base, name string) error {
	b, err := safefs.OpenDir(base)
	if err != nil {
		return err
	}
	defer b.Close()
	d, err := safefs.OpenDirAt(b, name, false)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, safefs.ErrNotRegular) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	mounts, err := safefs.MountsBelow(d)
	if err != nil {
		return err
	}
	if len(mounts) > 0 {
		return fmt.Errorf("refusing to delete %s: %s mounted inside it: %w", d.Name(), strings.Join(mounts, ", "), ErrHoldsMount)
	}
	return nil
}
