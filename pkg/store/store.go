// Package store owns keeplog's on-disk layout under the root, the one source of truth on a node:
//
//	<root>/<namespace>_<pod>_<uid>/           a pod's directory (kubelet's /var/log/pods naming)
//	<root>/_volume_<volume-id>/               a volume's directory when the CO sent no pod information
//	<root>/.pods/<pod-dir>/<container>/...    stdout/stderr in kubelet's layout, hard links (api.PodLogsDir)
//	<root>/.keeplog/volumes/<volume-id>/      keeplog's records of one volume:
//	    volume.json                           what CreateVolume (or the first ephemeral publish) was asked for
//	    pods/<pod-dir>.json                   each pod directory the volume owns, with publish/unpublish times
//	    targets/<sha256(target)>.json         each target path the volume is published at right now
//
// Nothing is kept only in memory: every call reads the records, so a restarted plugin knows what it knew.
// Records are written atomically (temp file, fsync, rename). Paths are built only from validated components
// and checked to stay below the root; symlinks are never followed.
package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/pkg/api"
)

// Errors the driver maps to gRPC codes.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrConflict = errors.New("conflict")
	ErrInUse    = errors.New("in use")
	// ErrHoldsMount refuses to delete a directory with something mounted at or below it: what is mounted belongs
	// to someone else and is never emptied. The directory is kept until the mount is gone.
	ErrHoldsMount = errors.New("holds a mount")
)

// Kind tells how a volume came to be.
type Kind string

// The kinds of volume.
const (
	Persistent Kind = "persistent" // CreateVolume through a StorageClass (including generic ephemeral volumes)
	Ephemeral  Kind = "ephemeral"  // a CSI inline ephemeral volume, created at its first NodePublish
)

// Volume is what keeplog knows about one volume.
type Volume struct {
	ID            string            `json:"id"`
	Name          string            `json:"name,omitempty"`
	Kind          Kind              `json:"kind"`
	CapacityBytes int64             `json:"capacityBytes"`
	Parameters    map[string]string `json:"parameters,omitempty"`
	Node          string            `json:"node"`
	CreatedAt     time.Time         `json:"createdAt"`
	Deleting      bool              `json:"deleting,omitempty"`
}

// PodDir is one directory owned by a volume.
type PodDir struct {
	Dir            string    `json:"dir"`
	Pod            *PodRef   `json:"pod,omitempty"` // nil for a fallback directory
	FirstPublished time.Time `json:"firstPublished"`
	LastPublished  time.Time `json:"lastPublished"`
	// UnpublishedAt is when the last target using this directory went away; zero while it is published.
	// The retention clock starts here.
	UnpublishedAt time.Time `json:"unpublishedAt,omitempty"`
	// Annotations are the pod's keeplog.csi.io/* annotations as last seen, so the policy of a deleted pod's
	// directory is still known.
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Target is one target path a volume is published at.
type Target struct {
	Path        string    `json:"path"`
	PodDir      string    `json:"podDir"`
	ReadOnly    bool      `json:"readOnly"`
	PublishedAt time.Time `json:"publishedAt"`
}

// Store is the on-disk layout under one root. Its mutex serialises record changes; the driver's per-volume locks keep
// calls for one volume apart, this one keeps two volumes from claiming the same pod directory at once.
//
// One process owns a root's records (the node plugin). The disk is the source of truth; the Store keeps one index in
// memory, of which volume owns each pod directory, read from the records at the first lookup and kept up to date by
// the methods that write or remove them, so that a publish or a policy lookup does not read every volume's records
// (BenchmarkOwner10000: one lookup among 10,000 volumes).
type Store struct {
	root  string
	state string
	clk   clock.PassiveClock
	mu    sync.Mutex
	// owners maps a pod directory to the volume that owns it; nil until the first lookup. Guarded by mu.
	owners map[string]string
	// subs are told of every record change (Subscribe).
	subs subscribers
}

// Open checks the root (absolute, a real directory, not "/") and creates it and the state directory when missing.
// clk stamps the records (nil: the real clock).
func Open(root string, clk clock.PassiveClock) (*Store, error) {
	if !filepath.IsAbs(root) || filepath.Clean(root) != root || root == "/" {
		return nil, fmt.Errorf("root %q must be a clean absolute path other than /", root)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("create root %s: %w", root, err)
	}
	if err := checkRealDir(root); err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	state := filepath.Join(root, api.KeeplogDir)
	if err := os.MkdirAll(filepath.Join(state, api.VolumesDir), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w", state, err)
	}
	if err := checkRealDir(state); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Store{root: root, state: state, clk: clk}, nil
}

// Root is the directory under which every pod directory lives.
func (s *Store) Root() string { return s.root }

func (s *Store) volumeDir(id string) (string, error) {
	if err := ValidateKey(id); err != nil {
		return "", err
	}
	return childPath(filepath.Join(s.state, api.VolumesDir), id)
}

// PodDirPath returns the absolute path of a pod directory name, checked to be a direct child of the root.
func (s *Store) PodDirPath(dir string) (string, error) {
	if strings.HasPrefix(dir, ".") {
		return "", fmt.Errorf("pod directory name %q must not start with '.'", dir)
	}
	return childPath(s.root, dir)
}

// GetVolume reads a volume's record; ErrNotFound when there is none.
func (s *Store) GetVolume(id string) (*Volume, error) {
	dir, err := s.volumeDir(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	v := &Volume{}
	if err := readJSON(filepath.Join(dir, api.VolumeRecordFile), v); err != nil {
		return nil, err
	}
	return v, nil
}

// CreateVolume records a new volume; ErrExists (with the existing record) when the ID is taken.
func (s *Store) CreateVolume(v *Volume) (*Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dir, err := s.volumeDir(v.ID)
	if err != nil {
		return nil, err
	}
	if old, err := s.GetVolume(v.ID); err == nil {
		return old, ErrExists
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	for _, sub := range []string{api.PodRecordsDir, api.TargetRecordsDir} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("create records of volume %s: %w", v.ID, err)
		}
	}
	if v.CreatedAt.IsZero() {
		v.CreatedAt = s.clk.Now().UTC()
	}
	if err := WriteJSONAtomic(filepath.Join(dir, api.VolumeRecordFile), v); err != nil {
		return nil, err
	}
	s.changed(v.ID)
	return v, nil
}

// ListVolumes returns every volume record, sorted by ID.
func (s *Store) ListVolumes() ([]*Volume, error) {
	ids, err := s.volumeIDs()
	if err != nil {
		return nil, err
	}
	var out []*Volume
	for _, id := range ids {
		v, err := s.GetVolume(id)
		if errors.Is(err, ErrNotFound) {
			continue // a half-created or half-deleted volume without its main record
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// volumeIDs lists the IDs of the volumes' directories (a half-created or half-deleted volume's too), without reading
// their records.
func (s *Store) volumeIDs() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.state, api.VolumesDir))
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.IsDir() && ValidateKey(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// ClaimPodDir makes sure the pod directory exists and belongs to the volume. It fails with ErrConflict when another
// volume owns it already. The ownership record is written before the directory, so a crash never leaves a
// directory that no volume owns.
func (s *Store) ClaimPodDir(volumeID, dir string, pod *PodRef) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path, err := s.PodDirPath(dir)
	if err != nil {
		return "", err
	}
	vdir, err := s.volumeDir(volumeID)
	if err != nil {
		return "", err
	}
	owner, err := s.ownerLocked(dir)
	if err != nil {
		return "", err
	}
	if owner != "" && owner != volumeID {
		return "", fmt.Errorf("directory %s belongs to volume %s: %w", dir, owner, ErrConflict)
	}
	rec := filepath.Join(vdir, api.PodRecordsDir, dir+".json")
	if owner == "" {
		now := s.clk.Now().UTC()
		if err := WriteJSONAtomic(rec, &PodDir{Dir: dir, Pod: pod, FirstPublished: now, UnpublishedAt: now}); err != nil {
			return "", err
		}
		s.owners[dir] = volumeID
		defer s.changed(volumeID) // once the directory exists too: a subscriber that looks finds it
	}
	if err := os.Mkdir(path, 0o777); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create pod directory %s: %w", path, err)
	}
	if err := checkRealDir(path); err != nil {
		return "", err
	}
	// Writable for whatever user the pod runs as (the container directories below get the pod's own user and group).
	if err := os.Chmod(path, 0o777); err != nil {
		return "", fmt.Errorf("set mode of %s: %w", path, err)
	}
	return path, nil
}

// ownerLocked returns the ID of the volume that owns a pod directory, or "". The index says which volume; its
// record is checked on disk, so a record removed by hand is not believed.
func (s *Store) ownerLocked(dir string) (string, error) {
	if err := s.loadOwnersLocked(); err != nil {
		return "", err
	}
	id, ok := s.owners[dir]
	if !ok {
		return "", nil
	}
	if _, err := os.Lstat(filepath.Join(s.state, api.VolumesDir, id, api.PodRecordsDir, dir+".json")); errors.Is(err, fs.ErrNotExist) {
		delete(s.owners, dir)
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("check the record of pod directory %s in volume %s: %w", dir, id, err)
	}
	return id, nil
}

// loadOwnersLocked reads every volume's pod directory records into the owner index, once.
func (s *Store) loadOwnersLocked() error {
	if s.owners != nil {
		return nil
	}
	vols, err := os.ReadDir(filepath.Join(s.state, api.VolumesDir))
	if err != nil {
		return fmt.Errorf("list volumes: %w", err)
	}
	owners := map[string]string{}
	for _, v := range vols {
		if !v.IsDir() || ValidateKey(v.Name()) != nil {
			continue
		}
		recs, err := os.ReadDir(filepath.Join(s.state, api.VolumesDir, v.Name(), api.PodRecordsDir))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("list pod directories of volume %s: %w", v.Name(), err)
		}
		for _, r := range recs {
			dir, ok := strings.CutSuffix(r.Name(), ".json")
			if !ok || !r.Type().IsRegular() || strings.HasPrefix(r.Name(), ".") {
				continue
			}
			if _, dup := owners[dir]; !dup { // two owners are never written (ClaimPodDir refuses); the first by ID wins
				owners[dir] = v.Name()
			}
		}
	}
	s.owners = owners
	return nil
}

// PodDirs lists the pod directories a volume owns.
func (s *Store) PodDirs(volumeID string) ([]PodDir, error) {
	var out []PodDir
	err := s.eachRecord(volumeID, api.PodRecordsDir, func(path string) error {
		var p PodDir
		if err := readJSON(path, &p); err != nil {
			return err
		}
		out = append(out, sharePodRef(p))
		return nil
	})
	return out, err
}

// sharePodRef points the pod reference's fields into the directory's name when the directory is the pod's own
// (<namespace>_<name>_<uid>), so the three strings are not kept twice: the usage tracker, the garbage collector and
// the archiver keep a PodDir of each of a node's (thousands of) retained directories.
func sharePodRef(pd PodDir) PodDir {
	p := pd.Pod
	if p == nil || pd.Dir != p.DirName() {
		return pd
	}
	ns, rest := pd.Dir[:len(p.Namespace)], pd.Dir[len(p.Namespace)+1:]
	pd.Pod = &PodRef{Namespace: ns, Name: rest[:len(p.Name)], UID: rest[len(p.Name)+1:]}
	return pd
}

// Targets lists where a volume is published right now.
func (s *Store) Targets(volumeID string) ([]Target, error) {
	var out []Target
	err := s.eachRecord(volumeID, api.TargetRecordsDir, func(path string) error {
		var t Target
		if err := readJSON(path, &t); err != nil {
			return err
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

func (s *Store) eachRecord(volumeID, sub string, fn func(path string) error) error {
	vdir, err := s.volumeDir(volumeID)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(vdir, sub))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s of volume %s: %w", sub, volumeID, err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if err := fn(filepath.Join(vdir, sub, e.Name())); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

func targetRecordName(path string) string {
	sum := sha256.Sum256([]byte(path))
	return hex.EncodeToString(sum[:16]) + ".json"
}

// FindTarget returns the record of a volume's publication at path; ErrNotFound when it is not published there.
func (s *Store) FindTarget(volumeID, path string) (*Target, error) {
	vdir, err := s.volumeDir(volumeID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	t := &Target{}
	if err := readJSON(filepath.Join(vdir, api.TargetRecordsDir, targetRecordName(path)), t); err != nil {
		return nil, err
	}
	return t, nil
}

// AddTarget records that the volume is (about to be) published at t.Path and marks its pod directory as in use.
func (s *Store) AddTarget(volumeID string, t Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	vdir, err := s.volumeDir(volumeID)
	if err != nil {
		return err
	}
	if t.PublishedAt.IsZero() {
		t.PublishedAt = s.clk.Now().UTC()
	}
	if err := WriteJSONAtomic(filepath.Join(vdir, api.TargetRecordsDir, targetRecordName(t.Path)), &t); err != nil {
		return err
	}
	defer s.changed(volumeID) // after the pod directory's record too, and when that fails
	return s.updatePodDirLocked(vdir, t.PodDir, func(p *PodDir) {
		p.LastPublished = t.PublishedAt
		p.UnpublishedAt = time.Time{}
	})
}

// RemoveTarget forgets a publication. When it was the last one of its pod directory, the directory's
// unpublish time is set: the retention clock starts.
func (s *Store) RemoveTarget(volumeID, path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	vdir, err := s.volumeDir(volumeID)
	if err != nil {
		return err
	}
	rec := filepath.Join(vdir, api.TargetRecordsDir, targetRecordName(path))
	var t Target
	if err := readJSON(rec, &t); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	if err := os.Remove(rec); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove publish record of %s: %w", path, err)
	}
	defer s.changed(volumeID)
	if err := SyncDir(filepath.Dir(rec)); err != nil {
		return err
	}
	targets, err := s.Targets(volumeID)
	if err != nil {
		return err
	}
	for _, other := range targets {
		if other.PodDir == t.PodDir {
			return nil
		}
	}
	return s.updatePodDirLocked(vdir, t.PodDir, func(p *PodDir) { p.UnpublishedAt = s.clk.Now().UTC() })
}

func (s *Store) updatePodDirLocked(vdir, dir string, change func(*PodDir)) error {
	rec := filepath.Join(vdir, api.PodRecordsDir, dir+".json")
	var p PodDir
	if err := readJSON(rec, &p); err != nil {
		return err
	}
	change(&p)
	return WriteJSONAtomic(rec, &p)
}

// DeleteVolume removes every pod directory the volume owns, then its records. It refuses (ErrInUse) while the volume is
// published anywhere, and is idempotent: an unknown volume is already deleted, a half-deleted one is finished.
func (s *Store) DeleteVolume(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.GetVolume(id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	targets, err := s.Targets(id)
	if err != nil {
		return err
	}
	if len(targets) > 0 {
		return fmt.Errorf("volume %s is published at %s: %w", id, targets[0].Path, ErrInUse)
	}
	vdir, _ := s.volumeDir(id)
	defer s.changed(id) // marked deleting, directories removed or the records gone: each is a change
	if !v.Deleting {
		v.Deleting = true
		if err := WriteJSONAtomic(filepath.Join(vdir, api.VolumeRecordFile), v); err != nil {
			return err
		}
	}
	dirs, err := s.PodDirs(id)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		path, err := s.PodDirPath(d.Dir)
		if err != nil {
			return fmt.Errorf("volume %s owns an invalid directory name: %w", id, err)
		}
		if err := checkNoMounts(s.root, d.Dir); err != nil {
			return fmt.Errorf("volume %s: %w", id, err)
		}
		if err := s.removePodLogs(d.Dir); err != nil {
			return fmt.Errorf("volume %s: %w", id, err)
		}
		if err := removeTree(s.root, path); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(vdir, api.PodRecordsDir, d.Dir+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove record of %s: %w", d.Dir, err)
		}
		if s.owners != nil && s.owners[d.Dir] == id {
			delete(s.owners, d.Dir)
		}
	}
	// The volume's records go last, so an interrupted delete is found and finished by the next call.
	if err := os.RemoveAll(vdir); err != nil {
		return fmt.Errorf("remove records of volume %s: %w", id, err)
	}
	return SyncDir(filepath.Dir(vdir))
}

// Published is one publication that Reconcile kept: the volume's ID and the target's record.
type Published struct {
	VolumeID string
	Target   Target
}

// Reconcile drops publish records whose target is no longer mounted (a node reboot, a crash between record and
// mount) and returns the targets it dropped and the publications it kept. Records of targets that are still mounted
// are kept: a plugin restarted while pods run keeps serving them. Only the volumes' target records are read, not
// their main records: on a node that keeps 20,000 retained volumes and publishes a hundred, reading every volume
// record here was 0.45 of the start's 16 cpu-s, and the caller needs the few published ones only.
func (s *Store) Reconcile(isMounted func(path string) (bool, error)) (dropped []string, kept []Published, err error) {
	ids, err := s.volumeIDs()
	if err != nil {
		return nil, nil, err
	}
	for _, id := range ids {
		targets, err := s.Targets(id)
		if err != nil {
			return dropped, kept, err
		}
		for _, t := range targets {
			mounted, err := isMounted(t.Path)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return dropped, kept, fmt.Errorf("check whether %s is mounted: %w", t.Path, err)
			}
			if mounted {
				kept = append(kept, Published{VolumeID: id, Target: t})
				continue
			}
			if err := s.RemoveTarget(id, t.Path); err != nil {
				return dropped, kept, err
			}
			dropped = append(dropped, t.Path)
		}
	}
	return dropped, kept, nil
}
