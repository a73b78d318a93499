package policy

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// archiveCacheMax bounds the cache of published pod directories' policies: past it, an arbitrary entry makes room.
// These are the ones asked for again at once (the archiver asks for every file written).
const archiveCacheMax = 1024

// retainedCacheMax bounds the separate cache of unpublished (retained) pod directories' policies. A node keeps
// thousands of them, each walked once an hour by the archiver's retained rescan and asked about by each garbage
// collection pass: cached with the live ones, they would push the live pods' entries out every hour. In their own
// small cache they displace only each other; it serves a retained directory that has work (a dump settling or
// uploading, walked at every rescan), not the hourly walk of all of them.
const retainedCacheMax = 256

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

	mu       sync.Mutex
	cache    map[string]cachedArchive // published pod directories
	retained map[string]cachedArchive // unpublished ones, and those no volume owns
	warned   map[string]string
}

type cachedArchive struct {
	p   ArchivePolicy
	gen uint64 // ArchivePolicies.gen when it was resolved
}

// NewArchivePolicies caches r's archive policies, and subscribes to r's store so that every change of a record
// makes them stale.
func NewArchivePolicies(r *Resolver, deps ArchiveDeps) *ArchivePolicies {
	a := &ArchivePolicies{r: r, deps: deps, cache: map[string]cachedArchive{}, retained: map[string]cachedArchive{},
		warned: map[string]string{}}
	r.store.Subscribe(a.changed)
	return a
}

// changed is the store's notification: it returns at once and never calls the store.
func (a *ArchivePolicies) changed(string) { a.gen.Add(1) }

// For returns the archive policy of a pod directory (its base name). A directory no volume owns archives with the
// defaults. A published directory's answer is cached with the other published ones, an unpublished one's in the
// retained cache (retainedCacheMax), so that asking about every retained directory never displaces a live pod's.
func (a *ArchivePolicies) For(dir string) ArchivePolicy {
	a.mu.Lock()
	defer a.mu.Unlock()
	gen := a.gen.Load() // before resolving: a change made meanwhile leaves this answer stale
	if c, ok := a.cache[dir]; ok && c.gen == gen {
		return c.p
	}
	if c, ok := a.retained[dir]; ok && c.gen == gen {
		return c.p
	}
	p, warns, published, err := a.r.resolve(dir)
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
	delete(a.cache, dir) // a directory published or unpublished since it was cached moves to the other cache
	delete(a.retained, dir)
	if published {
		a.admit(a.cache, archiveCacheMax, dir, cachedArchive{p: ap, gen: gen})
	} else {
		a.admit(a.retained, retainedCacheMax, dir, cachedArchive{p: ap, gen: gen})
	}
	return ap
}

// admit caches an entry in m, making room first when m holds limit entries: an arbitrary one goes (map order is
// random), with its warning's memory.
func (a *ArchivePolicies) admit(m map[string]cachedArchive, limit int, dir string, c cachedArchive) {
	if len(m) >= limit {
		for d := range m {
			delete(m, d)
			delete(a.warned, d)
			break
		}
	}
	m[dir] = c
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
