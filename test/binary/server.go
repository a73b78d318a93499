package binary

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keeplog/keeplog/internal/fstest"
	"github.com/keeplog/keeplog/pkg/archiver"
)

// Suffixes of the server-side names keeplog uses (pkg/archiver/podref.go): an archived file's manifest, and the
// marker in an upload's temporary name.
const (
	ManifestSuffix = ".manifest.json"
	TempMarker     = ".keeplog-tmp-"
)

// ServerFile is one archived file on the server: the data file and the manifest keeplog wrote beside it.
type ServerFile struct {
	// Rel is the data file's path under the server's data directory.
	Rel      string
	Manifest archiver.Manifest
	Size     int64
	ModTime  time.Time
	// Missing is true when the manifest exists and its data file does not.
	Missing bool
}

// Inventory is what the server holds under dataDir: the archived files (by their manifests) and the upload
// temporaries left behind.
type Inventory struct {
	Files []ServerFile
	Temps []string
}

// ReadInventory walks dataDir on the server's disk.
func ReadInventory(dataDir string) (Inventory, error) {
	var inv Inventory
	err := filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // renamed or removed under the walk
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dataDir, p)
		switch {
		case strings.Contains(d.Name(), TempMarker):
			inv.Temps = append(inv.Temps, rel)
		case strings.HasSuffix(d.Name(), ManifestSuffix):
			f, err := readServerFile(p, strings.TrimSuffix(rel, ManifestSuffix))
			if err != nil {
				return err
			}
			inv.Files = append(inv.Files, f)
		}
		return nil
	})
	return inv, err
}

func readServerFile(manifestPath, rel string) (ServerFile, error) {
	f := ServerFile{Rel: rel}
	b, err := os.ReadFile(manifestPath)
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(b, &f.Manifest); err != nil {
		return f, fmt.Errorf("manifest %s: %w", manifestPath, err)
	}
	st, err := os.Stat(strings.TrimSuffix(manifestPath, ManifestSuffix))
	if err != nil {
		f.Missing = true
		return f, nil
	}
	f.Size, f.ModTime = st.Size(), st.ModTime()
	return f, nil
}

// FileSHA256 hashes a file.
func FileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// WatchTemps counts the upload temporaries live at once in dirs (which must exist: create the remote directories
// first, owned by the SFTP user): fstest.TempWatch. A manifest's temporary belongs to the upload of its data file
// (same item), written just before the data file's rename: only data temporaries are uploads.
func WatchTemps(dirs []string) (*fstest.TempWatch, error) {
	return fstest.WatchTemps(dirs, func(base string) bool {
		return strings.Contains(base, TempMarker) && !strings.Contains(base, ManifestSuffix+TempMarker)
	})
}
