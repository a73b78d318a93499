package dump

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keeplog/keeplog/pkg/store"
)

// podState is what keeplog remembers of one pod directory's dumps, on disk so that a restart neither dumps a
// container again (firstOnly, cooldown) nor acts twice on the same dump-requested value.
type podState struct {
	// Requested is the last dump-requested value acted on (or seen when keeplog first saw the pod).
	Requested string `json:"requested"`
	// Rearm is the last dump-rearm value seen.
	Rearm string `json:"rearm"`
	// Containers by name.
	Containers map[string]*containerState `json:"containers,omitempty"`
}

type containerState struct {
	// Dumped is true once a dump on memory pressure was taken (firstOnly), until re-armed.
	Dumped bool `json:"dumped,omitempty"`
	// LastDump is when the last dump (any trigger) was asked for; the cooldown runs from it.
	LastDump time.Time `json:"lastDump,omitzero"`
}

func (s *podState) container(name string) *containerState {
	if s.Containers == nil {
		s.Containers = map[string]*containerState{}
	}
	c := s.Containers[name]
	if c == nil {
		c = &containerState{}
		s.Containers[name] = c
	}
	return c
}

// stateStore keeps one JSON file per pod directory in dir (<root>/.keeplog/dumps).
type stateStore struct{ dir string }

func (s stateStore) path(podDir string) (string, error) {
	if _, err := store.ParsePodDirName(podDir); err != nil {
		return "", err
	}
	return filepath.Join(s.dir, podDir+".json"), nil
}

// load returns the pod directory's state; found is false when there is none yet.
func (s stateStore) load(podDir string) (st *podState, found bool, err error) {
	p, err := s.path(podDir)
	if err != nil {
		return nil, false, err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return &podState{}, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read dump state: %w", err)
	}
	if err := store.CheckFormat(p, data); err != nil {
		return nil, false, err
	}
	st = &podState{}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, false, fmt.Errorf("dump state %s: %w", p, err)
	}
	return st, true, nil
}

func (s stateStore) save(podDir string, st *podState) error {
	p, err := s.path(podDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create dump state directory: %w", err)
	}
	return store.WriteJSONAtomic(p, st)
}

func (s stateStore) remove(podDir string) error {
	p, err := s.path(podDir)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove dump state: %w", err)
	}
	return nil
}

// prune removes the state of pod directories that no longer exist below root.
func (s stateStore) prune(root string) error {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list dump state: %w", err)
	}
	var errs []error
	for _, e := range entries {
		podDir, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		if _, err := os.Lstat(filepath.Join(root, podDir)); errors.Is(err, fs.ErrNotExist) {
			if err := s.remove(podDir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
