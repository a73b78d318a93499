package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entry is one file of a layer.
type entry struct {
	Name     string // relative, no leading slash
	Mode     int64
	Type     byte
	Linkname string
	Data     []byte
}

// layerFrom makes an uncompressed-in-memory, gzip-on-write layer of entries, every file owned by root with mtime at
// (the same input gives the same digest).
func layerFrom(entries []entry, mtime time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Mode: e.Mode, Typeflag: e.Type, Linkname: e.Linkname, ModTime: mtime,
			Size: int64(len(e.Data)), Format: tar.FormatPAX}
		if e.Type == tar.TypeDir {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
}

// rootfsEntries reads the base directory (what hack/image-rootfs.sh unpacked) as layer entries, sorted by name,
// plus the few files a Debian base has that the packages do not ship.
func rootfsEntries(dir string) ([]entry, error) {
	byName := map[string]entry{}
	for _, e := range baseFiles() {
		byName[e.Name] = e
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		e, err := entryFor(path, filepath.ToSlash(rel), d)
		if err != nil {
			return err
		}
		byName[e.Name] = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read base %s: %w", dir, err)
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]entry, 0, len(names))
	for _, n := range names {
		out = append(out, byName[n])
	}
	return out, nil
}

// entryFor is one file of the base: directories, regular files (setuid bits kept: Debian's mount is setuid) and
// symlinks; anything else in a package's contents is refused.
func entryFor(path, name string, d fs.DirEntry) (entry, error) {
	info, err := d.Info()
	if err != nil {
		return entry{}, err
	}
	mode := int64(info.Mode().Perm())
	if info.Mode()&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	switch {
	case d.IsDir():
		return entry{Name: name, Mode: mode, Type: tar.TypeDir}, nil
	case info.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(path)
		return entry{Name: name, Mode: 0o777, Type: tar.TypeSymlink, Linkname: target}, err
	case info.Mode().IsRegular():
		data, err := os.ReadFile(path)
		return entry{Name: name, Mode: mode, Type: tar.TypeReg, Data: data}, err
	default:
		return entry{}, fmt.Errorf("%s: %v is neither a directory, a regular file nor a symlink", path, info.Mode().Type())
	}
}

// baseFiles are what debian:bookworm-slim has and the packages do not: root's passwd and group entries (mount
// looks names up), a world-writable /tmp, and the directories the chart mounts Secrets under (/etc/keeplog: the root filesystem
// is read-only).
func baseFiles() []entry {
	dir := func(n string, m int64) entry { return entry{Name: n, Mode: m, Type: tar.TypeDir} }
	file := func(n, s string) entry { return entry{Name: n, Mode: 0o644, Type: tar.TypeReg, Data: []byte(s)} }
	return []entry{
		dir("dev", 0o755), dir("etc", 0o755), dir("etc/keeplog", 0o755), dir("proc", 0o555), dir("root", 0o700), dir("run", 0o755),
		dir("sys", 0o555), dir("tmp", 0o1777), dir("usr", 0o755), dir("usr/local", 0o755),
		dir("usr/local/bin", 0o755), dir("var", 0o755),
		file("etc/passwd", "root:x:0:0:root:/root:/usr/sbin/nologin\n"),
		file("etc/group", "root:x:0:\n"),
		file("etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n"),
	}
}
