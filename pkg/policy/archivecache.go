package policy

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// archiveCacheMax bounds the cache: past it, an arbitrary entry makes room (a node keeps thousands of retained pod
// directories, each visited once an hour; the ones written to now are asked for again at once).
const archiveCacheMax = 1024

// Recorder sends Events on pods (*kube.Events implements it).
type Recorder interface {
	PodEvent(pod store.PodRef, eventType, reason, message string)
}

// ArchiveDeps are the side effects of ArchivePolicies.
type ArchiveDeps struct {
	// Events gets a Warning Event the first time a pod directory's annotations are seen malformed; nil sends none.
	Events Recorder
	Log    logr.Logger
}

// ArchivePolicies gives the archiver each pod directory's ArchivePolicy, resolved again only after the store
// changed a record, and reports malformed annotations once per directory and message. It is safe for concurrent
// use.
//
// The archiver asks for every file it visits, and resolving reads the store, so the answer is cached; what it
// depends on changes only through the store: a volume's parameters, which volume owns a directory, and the pod's
// keeplog annotations (the pod informer's Observe writes them to the store when they change, and a live lookup that
// finds them changed does too). So every store change (store.Subscribe) makes every cached policy stale, and nothing
// else does: a pod writing a log line a second costs a map lookup, not a read of its records every few seconds.
type ArchivePolicies struct {
	r    *Resolver
	deps ArchiveDeps
	// gen counts the store's changes; an entry resolved before the latest one is stale. Atomic: the store calls
	// changed with its own lock held, while For holds mu across the store's calls.
	gen atomic.Uint64

	mu     sync.Mutex
	cache  map[string]cachedArchive
	warned map[string]string
}

type cachedArchive struct {
	p   ArchivePolicy
	gen uint64 // ArchivePolicies.gen when it was resolved
}

// NewArchivePolicies caches r's archive policies, and subscribes to r's store so that every change of a record
// makes them stale.
func NewArchivePolicies(r *Resolver, deps ArchiveDeps) *ArchivePolicies {
	a := &ArchivePolicies{r: r, deps: deps, cache: map[string]cachedArchive{}, warned: map[string]string{}}
	r.store.Subscribe(a.changed)
	return a
}

// changed is the store's notification: it returns at once and never calls the store.
func (a *ArchivePolicies) changed(string) { a.gen.Add(1) }

// For returns the archive policy of a pod directory (its base name). A directory no volume owns archives with the
// defaults.
func (a *ArchivePolicies) For(dir string) ArchivePolicy {
	a.mu.Lock()
	defer a.mu.Unlock()
	gen := a.gen.Load() // before resolving: a change made meanwhile leaves this answer stale
	if c, ok := a.cache[dir]; ok && c.gen == gen {
		return c.p
	}
	p, warns, err := a.r.For(dir)
	if err != nil {
		a.deps.Log.V(2).Info("Archive policy from defaults", "dir", dir, "reason", err)
	}
	if len(warns) > 0 {
		msg := errors.Join(warns...).Error()
		if ref, err := store.ParsePodDirName(dir); err == nil && a.warned[dir] != msg {
			a.warned[dir] = msg
			if a.deps.Events != nil {
				a.deps.Events.PodEvent(ref, "Warning", api.ReasonInvalidKeeplogSetting, msg)
			}
		}
	}
	ap := p.ArchivePolicy()
	if _, ok := a.cache[dir]; !ok && len(a.cache) >= archiveCacheMax {
		for d := range a.cache { // any one: map order is random
			delete(a.cache, d)
			delete(a.warned, d)
			break
		}
	}
	a.cache[dir] = cachedArchive{p: ap, gen: gen}
	return ap
}

// Patterns returns which files of a pod directory are archived (Off and Patterns only), uncached and without
// Events: the heap dump trigger's question (which files are dumps); warnings are the archiver's to report.
func (a *ArchivePolicies) Patterns(dir string) ArchivePolicy {
	p, _, err := a.r.For(dir)
	if err != nil {
		a.deps.Log.V(4).Info("Dump file patterns from defaults", "dir", dir, "reason", err)
		return ArchivePolicy{}
	}
	return ArchivePolicy{Off: !p.Archive, Patterns: p.ArchivePatterns}
}
