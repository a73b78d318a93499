package fstest

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// SecretVolume is a directory laid out as kubelet lays out a Secret volume, and changed as kubelet changes one
// (its AtomicWriter): the files are in a timestamped directory "..<UTC time>.<random>", "..data" is a symlink to
// it, and each key is a symlink "<key> -> ..data/<key>". Write puts the new content in a new timestamped directory,
// swaps ..data to it with one rename (a reader sees the old set of files or the new one, never a mix), adds the
// links of new keys, removes those of dropped keys, then the old directory.
type SecretVolume struct {
	t testing.TB
	// Dir is the volume's directory (what a container's mountPath shows).
	Dir  string
	keys map[string]bool
}

// NewSecretVolume lays out kv in dir (which must exist and be empty).
func NewSecretVolume(t testing.TB, dir string, kv map[string]string) *SecretVolume {
	t.Helper()
	v := &SecretVolume{t: t, Dir: dir, keys: map[string]bool{}}
	v.Write(kv)
	return v
}

// Write replaces the volume's content with kv, as kubelet does when the Secret changed.
func (v *SecretVolume) Write(kv map[string]string) {
	v.t.Helper()
	old, _ := os.Readlink(filepath.Join(v.Dir, "..data"))
	ts, err := os.MkdirTemp(v.Dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		v.t.Fatal(err)
	}
	if err := os.Chmod(ts, 0o755); err != nil {
		v.t.Fatal(err)
	}
	names := make([]string, 0, len(kv))
	for k := range kv {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if err := os.WriteFile(filepath.Join(ts, k), []byte(kv[k]), 0o600); err != nil {
			v.t.Fatal(err)
		}
	}
	tmp := filepath.Join(v.Dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.Dir, "..data")); err != nil {
		v.t.Fatal(err)
	}
	for _, k := range names {
		if !v.keys[k] {
			if err := os.Symlink(filepath.Join("..data", k), filepath.Join(v.Dir, k)); err != nil {
				v.t.Fatal(err)
			}
			v.keys[k] = true
		}
	}
	for k := range v.keys {
		if _, ok := kv[k]; !ok {
			if err := os.Remove(filepath.Join(v.Dir, k)); err != nil {
				v.t.Fatal(err)
			}
			delete(v.keys, k)
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.Dir, old)); err != nil {
			v.t.Fatal(err)
		}
	}
}
