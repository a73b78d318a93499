// Package driver serves keeplog's CSI Identity, Controller and Node services. It is the one place where errors become
// gRPC status codes: the store returns plain errors, the methods here map them.
package driver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/mount-utils"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/podinfo"
	"github.com/keeplog/keeplog/pkg/store"
)

// Config is what the driver needs to know; it has no side effects of its own.
type Config struct {
	Name    string // CSI driver name
	Version string
	NodeID  string
}

// FSStats is what the driver reads from the root's filesystem.
type FSStats struct {
	TotalBytes, FreeBytes, TotalInodes, FreeInodes int64
}

// Deps are the driver's side effects, created by the caller (cmd/keeplog) and swapped by tests.
type Deps struct {
	// Log is where the driver logs (the zero Logger discards).
	Log     logr.Logger
	Store   *store.Store
	Mounter mount.Interface
	// Statfs reads the filesystem that holds path.
	Statfs func(path string) (FSStats, error)
	// Metrics is where the driver registers its collectors; nil means none.
	Metrics prometheus.Registerer
	// Describer writes the pod's description into its directory; nil means none. It never fails a call.
	Describer Describer
	// Archiver is told when a pod directory is unpublished, so its dumps need no quiet period; nil means none.
	Archiver Archiver
	// Usage reports volumes' usage (pkg/usage); nil means NodeGetVolumeStats walks the volume and GetCapacity is the
	// plain free space.
	Usage UsageReporter
	// Admission may refuse new volumes (pkg/gc, past the disk hard limit); nil admits every volume.
	Admission Admission
}

// Archiver is told when a pod directory is published and unpublished (pkg/archiver implements it): it watches
// only published ones.
type Archiver interface {
	// MarkPublished is told the pod directory's path after the bind mount, and, by Reconcile before the archiver
	// runs, the name of each pod directory still published.
	MarkPublished(podDir string)
	// MarkUnpublished is told the pod directory's path after the unmount and the Describer.
	MarkUnpublished(podDir string)
}

// Describer is told about each pod's use of its directory (pkg/podinfo implements it).
type Describer interface {
	// Published runs before the bind mount, so what it prepares (container directories) exists when containers start.
	Published(ctx context.Context, u podinfo.Use)
	// Unpublished runs after the unmount.
	Unpublished(ctx context.Context, u podinfo.Use)
	// Resume is told at start about every pod directory that is still published.
	Resume(u podinfo.Use)
}

// Driver implements the CSI services.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer

	cfg     Config
	log     logr.Logger
	store   *store.Store
	mounter mount.Interface
	statfs  func(string) (FSStats, error)
	locks   *keyLocks
	metrics *grpcMetrics
	// describer is optional; see Deps.Describer.
	describer Describer
	// archiver is optional; see Deps.Archiver.
	archiver Archiver
	// usage is optional; see Deps.Usage.
	usage UsageReporter
	// admission is optional; see Deps.Admission.
	admission Admission

	noPodInfoOnce sync.Once
}

// New checks the configuration and builds a driver.
func New(cfg Config, deps Deps) (*Driver, error) {
	if cfg.Name == "" {
		cfg.Name = api.DriverName
	}
	if err := ValidateNodeID(cfg.NodeID); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Mounter == nil {
		return nil, errors.New("driver needs a store and a mounter")
	}
	if deps.Statfs == nil {
		deps.Statfs = Statfs
	}
	m, err := newGRPCMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	return &Driver{cfg: cfg, log: deps.Log, store: deps.Store, mounter: deps.Mounter, statfs: deps.Statfs, locks: newKeyLocks(), metrics: m,
		describer: deps.Describer, archiver: deps.Archiver, usage: deps.Usage, admission: deps.Admission}, nil
}

// Statfs reads a filesystem's size and free space with statfs(2).
func Statfs(path string) (FSStats, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return FSStats{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := int64(st.Bsize)
	return FSStats{TotalBytes: int64(st.Blocks) * bs, FreeBytes: int64(st.Bavail) * bs,
		TotalInodes: int64(st.Files), FreeInodes: int64(st.Ffree)}, nil
}

// Reconcile brings the publish records in line with the mount table; called once at start, before serving.
func (d *Driver) Reconcile() error {
	dropped, kept, err := d.store.Reconcile(d.mounter.IsMountPoint)
	if err != nil {
		return fmt.Errorf("reconcile publish records with the mount table: %w", err)
	}
	for _, t := range dropped {
		d.log.Info("Target is no longer mounted; its publish record was dropped", "target", t)
	}
	if d.archiver != nil {
		for _, p := range kept { // before the archiver runs: it must watch them, whatever its journal remembers
			d.archiver.MarkPublished(p.Target.PodDir)
		}
	}
	if d.describer == nil {
		return nil
	}
	vols := map[string]*store.Volume{}
	for _, p := range kept {
		v, ok := vols[p.VolumeID]
		if !ok {
			if v, err = d.store.GetVolume(p.VolumeID); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			vols[p.VolumeID] = v // nil for a half-created or half-deleted volume: nothing to describe
		}
		if v == nil {
			continue
		}
		if u, ok := d.use(v, p.Target.PodDir); ok {
			d.describer.Resume(u)
		}
	}
	return nil
}

// use describes a pod directory for the Describer; false for a directory without pod information.
func (d *Driver) use(v *store.Volume, dir string) (podinfo.Use, bool) {
	ref, err := store.ParsePodDirName(dir)
	if err != nil {
		return podinfo.Use{}, false
	}
	path, err := d.store.PodDirPath(dir)
	if err != nil {
		return podinfo.Use{}, false
	}
	u := podinfo.Use{PodDir: path, Pod: podinfo.PodContext{Pod: ref}}
	if v.Kind == store.Persistent {
		u.PVName = v.Name // csi-provisioner names the volume after its PV
	}
	return u, true
}

// ParseEndpoint accepts unix:///path, unix:/path or a plain absolute path and returns the socket path.
func ParseEndpoint(ep string) (string, error) {
	p := ep
	switch {
	case strings.HasPrefix(ep, "unix://"):
		p = strings.TrimPrefix(ep, "unix://")
	case strings.HasPrefix(ep, "unix:"):
		p = strings.TrimPrefix(ep, "unix:")
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("endpoint %q must be a unix socket with an absolute path (unix:///path/csi.sock)", ep)
	}
	return filepath.Clean(p), nil
}

// Listen removes a stale socket left by a crashed predecessor (only if it is a socket) and listens on path.
func Listen(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create socket directory for %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return l, nil
}

// Serve serves the CSI services on l until ctx ends, then stops gracefully (in-flight calls get gracePeriod).
func (d *Driver) Serve(ctx context.Context, l net.Listener, gracePeriod time.Duration) error {
	srv := grpc.NewServer(grpc.UnaryInterceptor(d.intercept))
	csi.RegisterIdentityServer(srv, d)
	csi.RegisterControllerServer(srv, d)
	csi.RegisterNodeServer(srv, d)
	return serveUntilDone(ctx, srv, l, gracePeriod)
}

func serveUntilDone(ctx context.Context, srv *grpc.Server, l net.Listener, gracePeriod time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("gRPC server on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(gracePeriod):
		srv.Stop()
	}
	return nil
}

// intercept logs each call, counts it, turns panics and plain errors into Internal, and keeps status errors as they are.
func (d *Driver) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			d.log.Error(nil, "Panic in CSI call", "method", info.FullMethod, "panic", r)
			resp, err = nil, status.Errorf(codes.Internal, "%s: internal error: %v", info.FullMethod, r)
		}
		if err != nil {
			if _, ok := status.FromError(err); !ok {
				err = status.Error(codes.Internal, err.Error())
			}
		}
		code := status.Code(err)
		d.metrics.observe(info.FullMethod, code, time.Since(start))
		if err != nil {
			d.log.V(2).Info("CSI call failed", "method", info.FullMethod, "code", code, "error", err, "duration", time.Since(start))
		} else {
			d.log.V(4).Info("CSI call", "method", info.FullMethod, "duration", time.Since(start))
		}
	}()
	return handler(ctx, req)
}

// storeError maps an error from the store to a gRPC status, keeping its message.
func storeError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrInUse), errors.Is(err, store.ErrHoldsMount):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, store.ErrExists):
		return status.Error(codes.AlreadyExists, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

func (d *Driver) lock(keys ...string) (func(), error) {
	if !d.locks.tryLock(keys...) {
		return nil, status.Errorf(codes.Aborted, "an operation on %s is already in progress", strings.Join(keys, " / "))
	}
	return func() { d.locks.unlock(keys...) }, nil
}

func (d *Driver) topology() *csi.Topology {
	return &csi.Topology{Segments: map[string]string{api.TopologyKey: d.cfg.NodeID}}
}
