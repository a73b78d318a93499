package archiver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keeplog/keeplog/pkg/store"
)

// ItemState is where a file is in its archive life.
type ItemState string

const (
	// StateQueued is a finished file waiting for an upload slot.
	StateQueued ItemState = "queued"
	// StateUploading means an upload was started (and may have been interrupted).
	StateUploading ItemState = "uploading"
	// StateDone means uploaded and verified. Never uploaded again.
	StateDone ItemState = "done"
	// StateFailed means it cannot be uploaded (unreadable, vanished, changed, not a
	// regular file). Reported once, not retried.
	StateFailed ItemState = "failed"
	// StateSkipped means not uploaded by policy (firstOnly).
	StateSkipped ItemState = "skipped"
)

func (s ItemState) terminal() bool { return s == StateDone || s == StateFailed || s == StateSkipped }

// Item is one finished file: identified by its pod directory, its path in
// it, its inode, size and mtime, so that a new file under an old name is a
// new item. (The device number is left out: it can change across reboots.)
type Item struct {
	ID        string    `json:"id"`
	PodDir    string    `json:"podDir"`
	Rel       string    `json:"path"`
	Container string    `json:"container"`
	Ino       uint64    `json:"inode"`
	Size      int64     `json:"size"`
	MtimeNs   int64     `json:"mtimeNs"`
	State     ItemState `json:"state"`
	// Remote is the archive path chosen for it (unique per node).
	Remote string `json:"remote,omitempty"`
	// SHA256 is the file's own (raw) digest once done.
	SHA256 string `json:"sha256,omitempty"`
	// Compression is how the file is stored ("" raw, "zstd:<level>"), decided when it was journalled so that the
	// remote name (".zst") and every attempt agree.
	Compression string `json:"compression,omitempty"`
	// StoredSize and StoredSHA256 describe the remote file once done (equal to Size and SHA256 when raw).
	StoredSize   int64  `json:"storedSize,omitempty"`
	StoredSHA256 string `json:"storedSha256,omitempty"`
	// Progress is what the server acknowledged of an upload under way (nil when none): an interrupted upload
	// continues from it.
	Progress *Progress `json:"progress,omitempty"`
	// SameAs is the ID of the archived item this one has the same content as (same inode, size and sha256: a
	// touch, rename or hard link): done without an upload, Remote is that item's.
	SameAs            string    `json:"sameAs,omitempty"`
	DeleteAfterUpload bool      `json:"deleteAfterUpload,omitempty"`
	Deleted           bool      `json:"deleted,omitempty"`
	Attempts          int       `json:"attempts,omitempty"`
	Error             string    `json:"error,omitempty"`
	QueuedAt          time.Time `json:"queuedAt"`
	UpdatedAt         time.Time `json:"updatedAt"`

	// pod is PodDir parsed (podErr when it is not a pod directory name), once, when the item entered the journal.
	pod    store.PodRef
	podErr error
}

// itemID derives an item's ID from its identity.
func itemID(podDir, rel string, ino uint64, size, mtimeNs int64) string {
	h := sha256.New()
	_, _ = fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d\x00%d", podDir, rel, ino, size, mtimeNs)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// firstRecord remembers which item is the first of a container (firstOnly).
type firstRecord struct {
	PodDir    string `json:"podDir"`
	Container string `json:"container"`
	Reset     string `json:"reset"`
	ItemID    string `json:"itemId"`
}

func firstKey(podDir, container, reset string) string {
	h := sha256.Sum256([]byte(podDir + "\x00" + container + "\x00" + reset))
	return hex.EncodeToString(h[:16])
}

// Journal is the archiver's durable memory on this node: one small JSON file
// per item (and per firstOnly decision), each written to a temporary file,
// fsynced, renamed into place and the directory fsynced. Safe for
// concurrent use.
type Journal struct {
	dir string

	mu     sync.Mutex
	items  map[string]*Item
	first  map[string]firstRecord
	remote map[string]string   // claimed remote path (data and manifest) -> item ID
	walked map[string]struct{} // walked marks (walked.go)
}

// OpenJournal loads (or creates) the journal in dir. Unreadable or corrupt
// entries are moved aside (suffix ".corrupt") and listed in the returned
// warnings; their files are rediscovered by the next scan.
func OpenJournal(dir string) (*Journal, []error, error) {
	j := &Journal{dir: dir, items: map[string]*Item{}, first: map[string]firstRecord{}, remote: map[string]string{},
		walked: map[string]struct{}{}}
	if err := j.loadWalked(); err != nil {
		return nil, nil, err
	}
	var warnings []error
	for _, sub := range []string{"items", "first"} {
		d := filepath.Join(dir, sub)
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, nil, fmt.Errorf("create journal directory %s: %w", d, err)
		}
		ents, err := os.ReadDir(d)
		if err != nil {
			return nil, nil, fmt.Errorf("read journal directory %s: %w", d, err)
		}
		for _, e := range ents {
			name := e.Name()
			p := filepath.Join(d, name)
			if strings.Contains(name, ".tmp") { // an interrupted write: the old version (if any) is intact
				_ = os.Remove(p)
				continue
			}
			if !strings.HasSuffix(name, ".json") {
				continue
			}
			b, err := os.ReadFile(p)
			if err == nil {
				// A newer keeplog's entry is neither misread nor moved aside as corrupt (its file would then be
				// uploaded again): the journal does not open, and keeplog says why.
				if ferr := store.CheckFormat(p, b); errors.Is(ferr, store.ErrNewerFormat) {
					return nil, nil, ferr
				} else if ferr != nil {
					err = ferr
				}
			}
			if err == nil {
				if sub == "items" {
					var it Item
					if err = json.Unmarshal(b, &it); err == nil && it.ID+".json" != name {
						err = fmt.Errorf("item id %q does not match the file name", it.ID)
					}
					if err == nil {
						it.pod, it.podErr = parsePodDir(it.PodDir)
						j.items[it.ID] = &it
						j.claim(&it)
					}
				} else {
					var fr firstRecord
					if err = json.Unmarshal(b, &fr); err == nil {
						j.first[strings.TrimSuffix(name, ".json")] = fr
					}
				}
			}
			if err != nil {
				warnings = append(warnings, fmt.Errorf("journal entry %s: %v (moved aside)", p, err))
				_ = os.Rename(p, p+".corrupt")
			}
		}
	}
	return j, warnings, nil
}

func (j *Journal) claim(it *Item) {
	if it.Remote != "" && it.SameAs == "" { // a same-content item points at another item's remote file
		j.remote[it.Remote] = it.ID
		j.remote[manifestPath(it.Remote)] = it.ID
	}
}

// Get returns a copy of an item.
func (j *Journal) Get(id string) (Item, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	it, ok := j.items[id]
	if !ok {
		return Item{}, false
	}
	return *it, true
}

// Items returns copies of all items, oldest first.
func (j *Journal) Items() []Item {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]Item, 0, len(j.items))
	for _, it := range j.items {
		out = append(out, *it)
	}
	sort.Slice(out, func(a, b int) bool {
		if !out[a].QueuedAt.Equal(out[b].QueuedAt) {
			return out[a].QueuedAt.Before(out[b].QueuedAt)
		}
		return out[a].ID < out[b].ID
	})
	return out
}

// PodItems returns copies of one pod directory's items.
func (j *Journal) PodItems(podDir string) []Item {
	var out []Item
	for _, it := range j.Items() {
		if it.PodDir == podDir {
			out = append(out, it)
		}
	}
	return out
}

// Put writes an item durably. A new item gets a remote path that no other
// item of this journal has: base, or base with a generation number.
// Put checks no state change: it is tests' way to set up a journal in any state (the archiver changes items through
// the transitions, transitions.go). An item Put by its directory name alone gets its pod parsed here, as one read
// at start does.
func (j *Journal) Put(it Item, remoteBase string) (Item, error) {
	if it.pod == (store.PodRef{}) && it.podErr == nil {
		it.pod, it.podErr = parsePodDir(it.PodDir)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.putLocked(it, remoteBase)
}

// putLocked writes an item with the journal locked; the item carries its pod already (discovered, or read at start).
func (j *Journal) putLocked(it Item, remoteBase string) (Item, error) {
	if it.Remote == "" && remoteBase != "" {
		for n := 1; ; n++ {
			cand := withGeneration(remoteBase, n)
			if owner, ok := j.remote[cand]; ok && owner != it.ID {
				continue
			}
			if owner, ok := j.remote[manifestPath(cand)]; ok && owner != it.ID {
				continue
			}
			it.Remote = cand
			break
		}
	}
	if err := store.WriteJSONAtomic(filepath.Join(j.dir, "items", it.ID+".json"), it); err != nil {
		return it, fmt.Errorf("journal %s (%s/%s): %w", it.ID, it.PodDir, it.Rel, err)
	}
	cp := it
	j.items[it.ID] = &cp
	j.claim(&cp)
	return it, nil
}

// Remove forgets an item.
func (j *Journal) Remove(id string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	it, ok := j.items[id]
	if !ok {
		return nil
	}
	p := filepath.Join(j.dir, "items", id+".json")
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove journal entry %s: %w", p, err)
	}
	if err := store.SyncDir(filepath.Dir(p)); err != nil {
		return err
	}
	delete(j.items, id)
	for _, p := range []string{it.Remote, manifestPath(it.Remote)} {
		if j.remote[p] == id {
			delete(j.remote, p)
		}
	}
	return nil
}

// sameInode returns the items of podDir other than id whose file had inode ino and the given size: the
// candidates for "same content" (inode numbers are compared without the device, which can change across
// reboots; within one pod directory, one filesystem, they name one file).
func (j *Journal) sameInode(podDir, id string, ino uint64, size int64) []Item {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []Item
	for _, it := range j.items {
		if it.ID != id && it.PodDir == podDir && it.Ino == ino && it.Size == size {
			out = append(out, *it)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].QueuedAt.Before(out[b].QueuedAt) })
	return out
}

// First returns the first item recorded for a container under a reset token.
func (j *Journal) First(podDir, container, reset string) (string, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	fr, ok := j.first[firstKey(podDir, container, reset)]
	return fr.ItemID, ok
}

// SetFirst records durably that itemID is the first of a container.
func (j *Journal) SetFirst(podDir, container, reset, itemID string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	k := firstKey(podDir, container, reset)
	fr := firstRecord{PodDir: podDir, Container: container, Reset: reset, ItemID: itemID}
	if err := store.WriteJSONAtomic(filepath.Join(j.dir, "first", k+".json"), fr); err != nil {
		return fmt.Errorf("journal firstOnly record for %s/%s: %w", podDir, container, err)
	}
	j.first[k] = fr
	return nil
}

// ForgetPod drops the firstOnly records of a pod directory that is gone.
func (j *Journal) ForgetPod(podDir string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for k, fr := range j.first {
		if fr.PodDir != podDir {
			continue
		}
		p := filepath.Join(j.dir, "first", k+".json")
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove journal entry %s: %w", p, err)
		}
		delete(j.first, k)
	}
	return nil
}

// active counts items not in a terminal state (queued or uploading).
func (j *Journal) active() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for _, it := range j.items {
		if !it.State.terminal() {
			n++
		}
	}
	return n
}
