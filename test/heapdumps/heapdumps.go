package heapdumps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Sizes of the load shape: real dumps between 256 MiB and 1 GiB.
const (
	MinSize int64 = 256 << 20
	MaxSize int64 = 1 << 30
)

// Specs are n dumps with sizes spread over [MinSize, MaxSize], seeds 1..n. The sizes come from one fixed sequence,
// so Specs(k) is a prefix of Specs(n) for k < n: a reduced run reuses the full run's cached dumps.
func Specs(n int) []Spec {
	r := rand.New(rand.NewPCG(14, 14))
	out := make([]Spec, n)
	for i := range out {
		size := MinSize + r.Int64N(MaxSize-MinSize+1)
		out[i] = Spec{Size: size &^ (1<<20 - 1), Seed: int64(i + 1)}
	}
	return out
}

// Get returns the dump of s from the cache, making it first when it is missing; logf (may be nil) is told once,
// when a dump is made, its size and zstd -3 ratio.
func Get(ctx context.Context, s Spec, logf func(string, ...any)) (Dump, error) {
	dir, err := CacheDir()
	if err != nil {
		return Dump{}, err
	}
	release, err := lock(dir)
	if err != nil {
		return Dump{}, err
	}
	defer release()
	if d, ok, err := cached(dir, s); ok || err != nil {
		return d, err
	}
	d, err := makeDump(ctx, dir, s)
	if err == nil && logf != nil {
		logf("made heap dump %s", d)
	}
	return d, err
}

// GetAll is Get for each spec, in order.
func GetAll(ctx context.Context, specs []Spec, logf func(string, ...any)) ([]Dump, error) {
	out := make([]Dump, 0, len(specs))
	for _, s := range specs {
		d, err := Get(ctx, s, logf)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// makeDump makes one dump under a temporary name, measures it, writes its record, then renames it into place.
func makeDump(ctx context.Context, dir string, s Spec) (Dump, error) {
	classes, err := compile(ctx, dir)
	if err != nil {
		return Dump{}, err
	}
	d, _, _ := cached(dir, s)
	tmp := d.Path + ".tmp.hprof" // jcmd insists on the .hprof suffix
	_ = os.Remove(tmp)
	if err := dumpJVM(ctx, classes, s, tmp); err != nil {
		_ = os.Remove(tmp)
		return d, err
	}
	if d.Bytes, d.SHA256, err = digest(tmp); err != nil {
		return d, err
	}
	if d.Zstd3, err = zstd3Size(ctx, tmp); err != nil {
		return d, err
	}
	b, _ := json.Marshal(d)
	if err := os.WriteFile(d.Path+".json", b, 0o644); err != nil {
		return d, err
	}
	return d, os.Rename(tmp, d.Path)
}

func digest(p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// zstd3Size is what Debian's zstd at its default level makes of the file: the ratio a user who compresses the
// dump by hand gets, to compare with keeplog's stored size.
func zstd3Size(ctx context.Context, p string) (int64, error) {
	out, err := exec.CommandContext(ctx, "sh", "-c", `zstd -3 -q -c -- "$1" | wc -c`, "sh", p).Output()
	if err != nil {
		return 0, fmt.Errorf("zstd -3 %s (apt-get install -y zstd): %w", p, err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
}
