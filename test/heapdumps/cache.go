package heapdumps

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Spec names one dump: the wanted size (the file comes out within a few percent of it) and the seed of its
// object graph.
type Spec struct {
	Size int64
	Seed int64
}

// Dump is a made (or cached) heap dump and its figures.
type Dump struct {
	Spec
	// Path is the cached file; callers copy it, never change it.
	Path string
	// Bytes is the file's size, SHA256 its digest, Zstd3 the size `zstd -3` compresses it to.
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	Zstd3  int64  `json:"zstd3"`
}

// Ratio is Bytes / Zstd3, what zstd -3 gains on this dump.
func (d Dump) Ratio() float64 { return float64(d.Bytes) / float64(d.Zstd3) }

// String is the line printed for a dump.
func (d Dump) String() string {
	return fmt.Sprintf("%s: %.1f MiB, zstd -3 %.1f MiB (ratio %.2f)", filepath.Base(d.Path),
		float64(d.Bytes)/(1<<20), float64(d.Zstd3)/(1<<20), d.Ratio())
}

// CacheDir is $KEEPLOG_CACHE/heapdumps, else ~/.cache/keeplog/heapdumps.
func CacheDir() (string, error) {
	if d := os.Getenv("KEEPLOG_CACHE"); d != "" {
		return filepath.Join(d, "heapdumps"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".cache", "keeplog", "heapdumps"), nil
}

func (s Spec) name() string { return fmt.Sprintf("heap-%d-%d.hprof", s.Size, s.Seed) }

// cached reads the record of a finished dump; ok is false when there is none (the dump file is renamed into place
// after its record is written, so a record without its file is an interrupted run and is made again).
func cached(dir string, s Spec) (Dump, bool, error) {
	d := Dump{Spec: s, Path: filepath.Join(dir, s.name())}
	b, err := os.ReadFile(d.Path + ".json")
	if errors.Is(err, fs.ErrNotExist) {
		return d, false, nil
	}
	if err != nil {
		return d, false, err
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, false, fmt.Errorf("%s.json: %w", d.Path, err)
	}
	st, err := os.Stat(d.Path)
	if err != nil || st.Size() != d.Bytes {
		return d, false, nil
	}
	return d, true, nil
}

// lock takes an flock on the cache directory so that two test processes do not make the same dump at once; the
// kernel releases it if the holder dies.
func lock(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	// Closing the descriptor releases the lock; the file is never written.
	return func() { _ = f.Close() }, nil
}
