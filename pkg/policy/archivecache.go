package policy

import (
	"errors"
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

// archiveCacheMax is the cache size at which expired entries are dropped.
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
	if len(a.cache) >= archiveCacheMax { // drop what expired: directories come and go
		for d, c := range a.cache {
			if now.Sub(c.at) >= archiveCacheTTL {
				delete(a.cache, d)
				delete(a.warned, d)
			}
		}
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
