package policy

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// archiveCacheTTL bounds how stale a pod directory's archive policy may be: the archiver asks for every file it
// visits, and resolving reads the store.
const archiveCacheTTL = 5 * time.Second

// archiveCacheMax bounds the cache: at that size expired entries are dropped, and then, if still more than half of
// it is left, the oldest ones. The archiver's rescan asks for every retained directory in turn (10,000 on a node
// that keeps a week of CronJob pods), each a few times within a moment; a cache that kept them all within the TTL
// grew to 10,000 entries, and a Go map never gives back its buckets: 4.6 MB of a 29 MB heap.
const archiveCacheMax = 1024

// Recorder sends Events on pods (*kube.Events implements it).
type Recorder interface {
	PodEvent(pod store.PodRef, eventType, reason, message string)
}

// ArchiveDeps are the side effects of ArchivePolicies.
type ArchiveDeps struct {
	// Events gets a Warning Event the first time a pod directory's annotations are seen malformed; nil sends none.
	Events Recorder
	Clock  clock.PassiveClock // nil: the real clock
	Log    logr.Logger
}

// ArchivePolicies gives the archiver each pod directory's ArchivePolicy, resolved at most every archiveCacheTTL,
// and reports malformed annotations once per directory and message. It is safe for concurrent use.
type ArchivePolicies struct {
	r    *Resolver
	deps ArchiveDeps

	mu     sync.Mutex
	cache  map[string]cachedArchive
	warned map[string]string
}

type cachedArchive struct {
	p  ArchivePolicy
	at time.Time
}

// NewArchivePolicies caches r's archive policies.
func NewArchivePolicies(r *Resolver, deps ArchiveDeps) *ArchivePolicies {
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	return &ArchivePolicies{r: r, deps: deps, cache: map[string]cachedArchive{}, warned: map[string]string{}}
}

// For returns the archive policy of a pod directory (its base name). A directory no volume owns archives with the
// defaults.
func (a *ArchivePolicies) For(dir string) ArchivePolicy {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.deps.Clock.Now()
	if c, ok := a.cache[dir]; ok && now.Sub(c.at) < archiveCacheTTL {
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
	if len(a.cache) >= archiveCacheMax {
		a.sweep(now)
	}
	a.cache[dir] = cachedArchive{p: ap, at: now}
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

// sweep drops the expired entries (and their warnings: a directory seen again is warned about again), keeps at most
// half of archiveCacheMax of the others (the newest), and moves them to a new map, so the old one's buckets are
// freed.
func (a *ArchivePolicies) sweep(now time.Time) {
	type entry struct {
		dir string
		c   cachedArchive
	}
	fresh := make([]entry, 0, len(a.cache))
	for d, c := range a.cache {
		if now.Sub(c.at) >= archiveCacheTTL {
			delete(a.warned, d)
			continue
		}
		fresh = append(fresh, entry{d, c})
	}
	if keep := archiveCacheMax / 2; len(fresh) > keep {
		slices.SortFunc(fresh, func(x, y entry) int { return y.c.at.Compare(x.c.at) })
		fresh = fresh[:keep]
	}
	a.cache = make(map[string]cachedArchive, archiveCacheMax)
	for _, e := range fresh {
		a.cache[e.dir] = e.c
	}
}
