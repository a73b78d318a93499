package retrieval

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"syscall"

	"golang.org/x/time/rate"
	"k8s.io/klog/v2"

	"github.com/keeplog/keeplog/internal/safefs"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/retrieval/wire"
	"github.com/keeplog/keeplog/pkg/store"
)

// PathPrefix is where the endpoints live (wire.PathPrefix).
const PathPrefix = wire.PathPrefix

// Defaults of Config.
const (
	DefaultBandwidth  = 50 << 20 // bytes per second, all downloads of the node together
	DefaultMaxStreams = 4
	chunk             = 32 << 10 // the most one read takes from the bucket at once (also its burst)
)

// Config bounds what downloads may take from the node. Zero values take the defaults.
type Config struct {
	Bandwidth  int64 // bytes per second for all downloads together
	MaxStreams int   // files streamed at once
	// Policy are the retention defaults (--retain-for, --max-retain-for): each directory's expiry is computed as the
	// garbage collector does.
	Policy policy.Defaults
}

// Deps are the handler's side effects.
type Deps struct {
	// Store holds the records (which pod directories exist, whose they are) and the root.
	Store *store.Store
}

// Handler serves the read endpoints; safe for concurrent use.
type Handler struct {
	deps    Deps
	policy  policy.Defaults
	limiter *rate.Limiter
	streams chan struct{}
	mux     *http.ServeMux
}

// New returns the handler. It does not authenticate: wrap it (cmd/keeplog uses internal/httpauth).
func New(cfg Config, deps Deps) (*Handler, error) {
	if deps.Store == nil {
		return nil, errors.New("retrieval: a store is required")
	}
	if cfg.Bandwidth <= 0 {
		cfg.Bandwidth = DefaultBandwidth
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	h := &Handler{deps: deps, policy: cfg.Policy, limiter: rate.NewLimiter(rate.Limit(cfg.Bandwidth), chunk),
		streams: make(chan struct{}, cfg.MaxStreams), mux: http.NewServeMux()}
	h.mux.HandleFunc("GET "+wire.PodsPath, h.listPods)
	h.mux.HandleFunc("GET "+wire.PodsPath+"/{dir}/files", h.listFiles)
	h.mux.HandleFunc("GET "+wire.PodsPath+"/{dir}/file", h.readFile)
	return h, nil
}

// ServeHTTP routes to the endpoints (GET and HEAD only).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		klog.V(2).InfoS("Could not write a retrieval answer", "err", err)
	}
}

// fail answers err with the status it deserves: 400 for a bad name, 403 for what safety refuses (a symlink, a
// special file, another mount), 404 for what does not exist, 500 otherwise. The message names no path outside the
// request's own terms.
func fail(w http.ResponseWriter, what string, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, errBadPath):
		status = http.StatusBadRequest
	case errors.Is(err, safefs.ErrNotRegular), errors.Is(err, safefs.ErrOtherMount), errors.Is(err, syscall.ELOOP),
		errors.Is(err, syscall.ENOTDIR):
		status = http.StatusForbidden
	case errors.Is(err, os.ErrNotExist), errors.Is(err, store.ErrNotFound):
		status = http.StatusNotFound
	}
	if status == http.StatusInternalServerError {
		klog.ErrorS(err, "Retrieval failed", "what", what)
	}
	http.Error(w, fmt.Sprintf("%s: %s", what, http.StatusText(status)), status)
}
