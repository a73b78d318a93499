package binary

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// WriteFile writes size pseudo-random bytes (seeded, so a run can be repeated) to p, creating its directories,
// the way an application writes a dump: open, write in 1 MiB pieces, close. It returns the content's sha256.
func WriteFile(p string, size int64, seed uint64) (string, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return "", err
	}
	var seedBytes [32]byte
	for i := range 8 {
		seedBytes[i] = byte(seed >> (8 * i))
	}
	src := rand.NewChaCha8(seedBytes)
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := int64(len(buf))
		if left < n {
			n = left
		}
		b := buf[:n]
		_, _ = src.Read(b)
		h.Write(b)
		if _, err := f.Write(b); err != nil {
			f.Close()
			return "", fmt.Errorf("write %s: %w", p, err)
		}
		left -= n
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
