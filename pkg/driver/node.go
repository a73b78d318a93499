package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/mount-utils"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/podinfo"
	"github.com/keeplog/keeplog/pkg/store"
)

// checkTargetPath refuses target paths that are relative, unclean, or overlap the root.
func (d *Driver) checkTargetPath(target string) error {
	if !filepath.IsAbs(target) || filepath.Clean(target) != target {
		return fmt.Errorf("target path %q must be a clean absolute path", target)
	}
	root := d.store.Root()
	if target == root || strings.HasPrefix(target, root+"/") || strings.HasPrefix(root, target+"/") {
		return fmt.Errorf("target path %q overlaps keeplog's root %q", target, root)
	}
	return nil
}

// NodePublishVolume bind-mounts the pod's directory (<root>/<namespace>_<pod>_<uid>) at the target path.
// Locks: the volume ID (its records change) and the target path (kubelet may retry a slow mount).
func (d *Driver) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	raw, target := req.GetVolumeId(), req.GetTargetPath()
	switch {
	case raw == "":
		return nil, status.Error(codes.InvalidArgument, "NodePublishVolume: volume ID is required")
	case target == "":
		return nil, status.Errorf(codes.InvalidArgument, "NodePublishVolume %s: target path is required", raw)
	case req.GetVolumeCapability() == nil:
		return nil, status.Errorf(codes.InvalidArgument, "NodePublishVolume %s: volume capability is required", raw)
	}
	if err := checkCapabilities([]*csi.VolumeCapability{req.GetVolumeCapability()}); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "NodePublishVolume %s: %v", raw, err)
	}
	if err := d.checkTargetPath(target); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "NodePublishVolume %s: %v", raw, err)
	}
	vc := req.GetVolumeContext()
	pc, hasPod, err := podinfo.PodContextFromVolumeContext(vc)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "NodePublishVolume %s: %v", raw, err)
	}
	var pod *store.PodRef
	if hasPod {
		pod = &pc.Pod
	}
	unlock, err := d.lock(raw, target)
	if err != nil {
		return nil, err
	}
	defer unlock()

	vol, err := d.publishVolume(raw, vc)
	if err != nil {
		return nil, err
	}
	dir := store.FallbackDirName(vol.ID)
	if pod != nil {
		dir = pod.DirName()
	} else {
		d.noPodInfoOnce.Do(func() {
			d.log.Info("WARNING: NodePublishVolume without pod information; volumes get one directory per volume instead of one per pod. Set podInfoOnMount: true in the CSIDriver object.", "volume", raw, "directory", dir)
		})
	}
	readOnly := req.GetReadonly()
	recorded, err := d.store.FindTarget(vol.ID, target)
	switch {
	case err == nil:
		if recorded.PodDir != dir || recorded.ReadOnly != readOnly {
			return nil, status.Errorf(codes.AlreadyExists, "NodePublishVolume %s: already published at %s for %s (read-only %v), not for %s (read-only %v)", raw, target, recorded.PodDir, recorded.ReadOnly, dir, readOnly)
		}
	case !errors.Is(err, store.ErrNotFound):
		return nil, storeError(err)
	}
	mounted, err := d.mounter.IsMountPoint(target)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.Internal, "NodePublishVolume %s: check target %s: %v", raw, target, err)
	}
	if mounted {
		if recorded != nil {
			return &csi.NodePublishVolumeResponse{}, nil // published before: idempotent
		}
		return nil, status.Errorf(codes.AlreadyExists, "NodePublishVolume %s: something else is mounted at %s", raw, target)
	}
	source, err := d.store.ClaimPodDir(vol.ID, dir, pod)
	if err != nil {
		return nil, storeError(fmt.Errorf("NodePublishVolume %s: %w", raw, err))
	}
	if u, ok := d.use(vol, dir); ok && d.describer != nil {
		u.Pod.ServiceAccount = pc.ServiceAccount
		d.describer.Published(ctx, u)
	}
	// The record goes first: a crash between record and mount leaves a record that Reconcile drops at start,
	// never a mount that no record knows.
	if err := d.store.AddTarget(vol.ID, store.Target{Path: target, PodDir: dir, ReadOnly: readOnly}); err != nil {
		return nil, storeError(err)
	}
	if err := d.bindMount(source, target, readOnly); err != nil {
		if rerr := d.store.RemoveTarget(vol.ID, target); rerr != nil {
			d.log.Error(rerr, "Could not drop the publish record of a failed mount", "volume", raw, "target", target)
		}
		return nil, status.Errorf(codes.Internal, "NodePublishVolume %s: %v", raw, err)
	}
	if d.archiver != nil {
		d.archiver.MarkPublished(source)
	}
	d.log.Info("Volume published", "volume", raw, "target", target, "directory", source, "readOnly", readOnly)
	return &csi.NodePublishVolumeResponse{}, nil
}

// publishVolume finds the volume a publish is for, creating the record of a CSI inline ephemeral volume the first time.
func (d *Driver) publishVolume(raw string, vc map[string]string) (*store.Volume, error) {
	if vc[api.VolumeContextEphemeral] != "true" {
		return d.findVolume(raw, false)
	}
	if err := validateEphemeralID(raw); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "NodePublishVolume: %v", err)
	}
	attrs := map[string]string{}
	for k, v := range vc {
		if !strings.HasPrefix(k, api.COParameterPrefix) {
			attrs[k] = v
		}
	}
	if err := checkParameters(attrs); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "NodePublishVolume %s: volume attributes: %v", raw, err)
	}
	if err := d.admitNew("NodePublishVolume", raw); err != nil {
		return nil, err
	}
	vol, err := d.store.CreateVolume(&store.Volume{ID: raw, Kind: store.Ephemeral, Node: d.cfg.NodeID, Parameters: maps.Clone(attrs)})
	if err != nil && !errors.Is(err, store.ErrExists) {
		return nil, storeError(err)
	}
	if vol.Kind != store.Ephemeral || vol.Deleting {
		return nil, status.Errorf(codes.FailedPrecondition, "NodePublishVolume %s: a volume of that ID exists and is not a live ephemeral volume", raw)
	}
	return vol, nil
}

func (d *Driver) bindMount(source, target string, readOnly bool) error {
	if err := os.MkdirAll(target, 0o750); err != nil {
		return fmt.Errorf("create target %s: %w", target, err)
	}
	opts := []string{"bind"}
	if readOnly {
		opts = append(opts, "ro")
	}
	if err := d.mounter.Mount(source, target, "", opts); err != nil {
		return fmt.Errorf("bind-mount %s at %s: %w", source, target, err)
	}
	return nil
}

// NodeUnpublishVolume unmounts the target and removes it. The pod's directory and its data stay: that is the point.
// Locks: the volume ID and the target path, as NodePublishVolume.
func (d *Driver) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	raw, target := req.GetVolumeId(), req.GetTargetPath()
	switch {
	case raw == "":
		return nil, status.Error(codes.InvalidArgument, "NodeUnpublishVolume: volume ID is required")
	case target == "":
		return nil, status.Errorf(codes.InvalidArgument, "NodeUnpublishVolume %s: target path is required", raw)
	}
	if err := d.checkTargetPath(target); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "NodeUnpublishVolume %s: %v", raw, err)
	}
	unlock, err := d.lock(raw, target)
	if err != nil {
		return nil, err
	}
	defer unlock()
	vol, err := d.findVolume(raw, true)
	if err != nil {
		return nil, err
	}
	published, err := d.store.FindTarget(vol.ID, target)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, storeError(err)
	}
	if err := mount.CleanupMountPoint(target, d.mounter, true); err != nil {
		return nil, status.Errorf(codes.Internal, "NodeUnpublishVolume %s: unmount %s: %v", raw, target, err)
	}
	if err := d.store.RemoveTarget(vol.ID, target); err != nil {
		return nil, storeError(err)
	}
	if published != nil && d.describer != nil {
		if u, ok := d.use(vol, published.PodDir); ok {
			d.describer.Unpublished(ctx, u)
		}
	}
	if published != nil && d.archiver != nil {
		if path, err := d.store.PodDirPath(published.PodDir); err == nil {
			d.archiver.MarkUnpublished(path)
		}
	}
	d.log.Info("Volume unpublished; its directory is kept", "volume", raw, "target", target)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// NodeGetVolumeStats reports what the volume's own directories use, not the whole filesystem, against its limit, and
// its condition (stats.go).
func (d *Driver) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	raw, path := req.GetVolumeId(), req.GetVolumePath()
	switch {
	case raw == "":
		return nil, status.Error(codes.InvalidArgument, "NodeGetVolumeStats: volume ID is required")
	case path == "":
		return nil, status.Errorf(codes.InvalidArgument, "NodeGetVolumeStats %s: volume path is required", raw)
	}
	vol, err := d.findVolume(raw, true)
	if err != nil {
		return nil, err
	}
	t, err := d.store.FindTarget(vol.ID, filepath.Clean(path))
	if err != nil {
		return nil, storeError(fmt.Errorf("NodeGetVolumeStats %s: not published at %s: %w", raw, path, err))
	}
	resp, err := d.volumeStats(vol, t)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "NodeGetVolumeStats %s: %v", raw, err)
	}
	return resp, nil
}

// NodeGetCapabilities reports volume stats and their volume condition.
func (d *Driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	var caps []*csi.NodeServiceCapability
	for _, t := range []csi.NodeServiceCapability_RPC_Type{csi.NodeServiceCapability_RPC_GET_VOLUME_STATS, nodeVolumeCondition} {
		caps = append(caps, &csi.NodeServiceCapability{Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: t}}})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

// NodeGetInfo names the node and its topology segment.
func (d *Driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: d.cfg.NodeID, AccessibleTopology: d.topology()}, nil
}
