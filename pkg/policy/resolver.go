package policy

import (
	"fmt"
	"maps"
	"sync"

	"github.com/keeplog/keeplog/pkg/store"
)

// LiveAnnotations returns the annotations of a pod as the API shows them now; ok is false when the pod is not
// known (deleted, not yet seen, or no API access). Implementations must check the UID.
type LiveAnnotations func(ref store.PodRef) (annotations map[string]string, ok bool)

// Resolver gives each pod directory its policy: its volume's parameters from the store, and its pod's keeplog
// annotations, live when the pod exists, else as last recorded in the store (so a deleted pod's directory keeps its
// policy). It is safe for concurrent use.
type Resolver struct {
	store    *store.Store
	live     LiveAnnotations
	defaults Defaults

	mu   sync.Mutex
	seen map[string]map[string]string // pod dir -> keeplog annotations last written to the store
}

// NewResolver builds a Resolver; live may be nil (no API access).
func NewResolver(st *store.Store, live LiveAnnotations, d Defaults) *Resolver {
	return &Resolver{store: st, live: live, defaults: d, seen: map[string]map[string]string{}}
}

// For returns the policy of a pod directory (its base name), with warnings about ignored annotations or
// parameters. A directory no volume owns gets the defaults and an error saying so.
func (r *Resolver) For(dir string) (Policy, []error, error) {
	p, warns, _, err := r.resolve(dir)
	return p, warns, err
}

// resolve is For, and says whether the directory is published according to its record (false when no volume
// owns it): what the archive-policy cache admits.
func (r *Resolver) resolve(dir string) (p Policy, warns []error, published bool, err error) {
	vol, pd, err := r.store.Owner(dir)
	if err != nil {
		p, _ := Resolve(nil, nil, r.defaults)
		return p, nil, false, fmt.Errorf("policy of %s: %w", dir, err)
	}
	ann := pd.Annotations
	if pd.Pod != nil && r.live != nil {
		if a, ok := r.live(*pd.Pod); ok {
			ann = KeeplogAnnotations(a)
			if err := r.remember(vol.ID, dir, ann); err != nil {
				return Policy{}, nil, false, err
			}
		}
	}
	p, warns = Resolve(vol.Parameters, ann, r.defaults)
	return p, warns, pd.UnpublishedAt.IsZero(), nil
}

// Observe records a live pod's keeplog annotations for its directory, so they outlive the pod. The informer calls
// it on every pod change; it writes only when the annotations changed. A pod without a keeplog directory is ignored.
func (r *Resolver) Observe(ref store.PodRef, annotations map[string]string) error {
	dir := ref.DirName()
	ann := KeeplogAnnotations(annotations)
	r.mu.Lock()
	last, known := r.seen[dir]
	r.mu.Unlock()
	if known && maps.Equal(last, ann) {
		return nil
	}
	vol, _, err := r.store.Owner(dir)
	if err != nil {
		return nil // not a pod with a keeplog directory (or not yet published): nothing to record
	}
	return r.remember(vol.ID, dir, ann)
}

func (r *Resolver) remember(volumeID, dir string, ann map[string]string) error {
	r.mu.Lock()
	last, known := r.seen[dir]
	r.mu.Unlock()
	if known && maps.Equal(last, ann) {
		return nil
	}
	if err := r.store.SetPodAnnotations(volumeID, dir, ann); err != nil {
		return fmt.Errorf("record annotations of %s: %w", dir, err)
	}
	r.mu.Lock()
	r.seen[dir] = ann
	r.mu.Unlock()
	return nil
}

// Forget drops what the Resolver remembers of a pod directory (after it was deleted).
func (r *Resolver) Forget(dir string) {
	r.mu.Lock()
	delete(r.seen, dir)
	r.mu.Unlock()
}
