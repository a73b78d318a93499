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
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

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

// TempWatch counts the upload temporaries open at once in a set of server directories, from inotify events (a
// temporary is created when an upload starts and renamed away when it ends): peak > 1 means two uploads at once.
type TempWatch struct {
	w    *fsnotify.Watcher
	done chan struct{}

	mu   sync.Mutex
	live map[string]time.Time
	peak int
	seen int // temporaries seen at all
	// overlaps describes each moment two or more were live.
	overlaps []string
	// timeline is every temporary's creation and end, as the server's disk saw them.
	timeline []string
}

// WatchTemps starts watching dirs (which must exist: create the remote directories first, owned by the SFTP user).
func WatchTemps(dirs []string) (*TempWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			w.Close()
			return nil, fmt.Errorf("watch %s: %w", d, err)
		}
	}
	tw := &TempWatch{w: w, done: make(chan struct{}), live: map[string]time.Time{}}
	go tw.run()
	return tw, nil
}

func (tw *TempWatch) run() {
	defer close(tw.done)
	for {
		select {
		case ev, ok := <-tw.w.Events:
			if !ok {
				return
			}
			tw.handle(ev)
		case _, ok := <-tw.w.Errors:
			if !ok {
				return
			}
		}
	}
}

func (tw *TempWatch) handle(ev fsnotify.Event) {
	// A manifest's temporary belongs to the upload of its data file (same item), written just before the data
	// file's rename: only data temporaries are uploads.
	base := filepath.Base(ev.Name)
	if !strings.Contains(base, TempMarker) || strings.Contains(base, ManifestSuffix+TempMarker) {
		return
	}
	tw.mu.Lock()
	defer tw.mu.Unlock()
	switch {
	case ev.Op&fsnotify.Create != 0:
		tw.live[ev.Name] = time.Now()
		tw.seen++
		tw.timeline = append(tw.timeline, time.Now().Format("15:04:05.000 start ")+filepath.Base(ev.Name))
		if len(tw.live) > 1 {
			var names []string
			for n := range tw.live {
				names = append(names, filepath.Base(n))
			}
			tw.overlaps = append(tw.overlaps, time.Now().Format("15:04:05.000 ")+strings.Join(names, " + "))
		}
		tw.peak = max(tw.peak, len(tw.live))
	case ev.Op&(fsnotify.Rename|fsnotify.Remove) != 0:
		if _, ok := tw.live[ev.Name]; ok {
			tw.timeline = append(tw.timeline, time.Now().Format("15:04:05.000 end   ")+filepath.Base(ev.Name))
		}
		delete(tw.live, ev.Name)
	}
}

// TempReport is what a TempWatch saw.
type TempReport struct {
	// Peak is the most temporaries live at once; Seen how many were created.
	Peak, Seen int
	// Overlaps describes each moment two or more were live; Timeline every start and end.
	Overlaps, Timeline []string
}

// Stop ends the watch and reports.
func (tw *TempWatch) Stop() TempReport {
	_ = tw.w.Close()
	<-tw.done
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return TempReport{Peak: tw.peak, Seen: tw.seen, Overlaps: tw.overlaps, Timeline: tw.timeline}
}
