package driver

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
)

// checkParameters refuses unknown StorageClass parameters by name, so a typo does not silently give a volume the
// default behaviour, and malformed values (pkg/policy knows them all).
func checkParameters(params map[string]string) error { return policy.ValidateParameters(params) }

// checkCapabilities accepts mount volumes on one node; keeplog volumes are directories on one node's disk.
func checkCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return errors.New("volume capabilities are required")
	}
	for _, c := range caps {
		if c.GetBlock() != nil {
			return errors.New("block volumes are not supported: keeplog volumes are directories")
		}
		if c.GetMount() == nil {
			return errors.New("volume capability must set access type mount")
		}
		switch m := c.GetAccessMode().GetMode(); m {
		case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
			csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY:
		default:
			return fmt.Errorf("access mode %s is not supported: keeplog volumes live on one node (use ReadWriteOnce)", m)
		}
	}
	return nil
}

// CreateVolume records a volume on this node. csi-provisioner runs with --node-deployment next to every node plugin,
// so this call always runs on the node the volume is for.
// Locks: the volume ID, so that a retried call waits for (gets Aborted by) the first.
func (d *Driver) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	name := req.GetName()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "CreateVolume: name is required")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "CreateVolume %s: %v", name, err)
	}
	if req.GetVolumeContentSource() != nil {
		return nil, status.Errorf(codes.InvalidArgument, "CreateVolume %s: volume content sources (snapshots, clones) are not supported", name)
	}
	if err := checkParameters(req.GetParameters()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "CreateVolume %s: %v", name, err)
	}
	capacity, err := requestedCapacity(req.GetCapacityRange())
	if err != nil {
		return nil, status.Errorf(codes.OutOfRange, "CreateVolume %s: %v", name, err)
	}
	if err := d.checkTopology(req.GetAccessibilityRequirements()); err != nil {
		return nil, status.Errorf(codes.ResourceExhausted, "CreateVolume %s: %v", name, err)
	}
	id, err := newVolumeID(d.cfg.NodeID, name)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "CreateVolume: %v", err)
	}
	unlock, err := d.lock(id.String())
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := d.admitNew("CreateVolume", id.String()); err != nil {
		return nil, err
	}

	want := &store.Volume{ID: id.String(), Name: name, Kind: store.Persistent, CapacityBytes: capacity,
		Parameters: maps.Clone(req.GetParameters()), Node: d.cfg.NodeID}
	got, err := d.store.CreateVolume(want)
	switch {
	case errors.Is(err, store.ErrExists):
		if got.Name != name || got.CapacityBytes != capacity {
			return nil, status.Errorf(codes.AlreadyExists, "CreateVolume %s: a volume of that name exists with capacity %d bytes, not %d", name, got.CapacityBytes, capacity)
		}
		if got.Deleting {
			return nil, status.Errorf(codes.Aborted, "CreateVolume %s: the volume of that name is being deleted", name)
		}
	case err != nil:
		return nil, storeError(err)
	default:
		d.log.Info("Volume created", "volume", got.ID, "capacity", capacity)
	}
	return &csi.CreateVolumeResponse{Volume: &csi.Volume{
		VolumeId:           got.ID,
		CapacityBytes:      got.CapacityBytes,
		AccessibleTopology: []*csi.Topology{d.topology()},
	}}, nil
}

// requestedCapacity is what the volume is sized to: the required bytes, else the limit, else 0 (unknown).
func requestedCapacity(r *csi.CapacityRange) (int64, error) {
	req, lim := r.GetRequiredBytes(), r.GetLimitBytes()
	if req < 0 || lim < 0 {
		return 0, fmt.Errorf("capacity range %d..%d must not be negative", req, lim)
	}
	if lim > 0 && req > lim {
		return 0, fmt.Errorf("required bytes %d exceed limit bytes %d", req, lim)
	}
	if req == 0 {
		return lim, nil
	}
	return req, nil
}

// checkTopology fails when the CO requires topologies none of which is this node.
func (d *Driver) checkTopology(ar *csi.TopologyRequirement) error {
	requisite := ar.GetRequisite()
	if len(requisite) == 0 {
		return nil
	}
	for _, t := range requisite {
		if d.isThisNode(t) {
			return nil
		}
	}
	return fmt.Errorf("this is node %q (%s) and none of the requisite topologies %v names it; the volume can only be created on the node whose keeplog plugin serves the call", d.cfg.NodeID, api.TopologyKey, requisite)
}

func (d *Driver) isThisNode(t *csi.Topology) bool {
	node, ok := t.GetSegments()[api.TopologyKey]
	return ok && node == d.cfg.NodeID
}

// DeleteVolume removes every directory the volume owns. An ID that names no volume is already deleted.
// Locks: the volume ID, so that a publish cannot start while its directories go.
func (d *Driver) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	raw := req.GetVolumeId()
	if raw == "" {
		return nil, status.Error(codes.InvalidArgument, "DeleteVolume: volume ID is required")
	}
	id, err := parseVolumeID(raw)
	if err != nil {
		d.log.V(2).Info("DeleteVolume of an ID that is not a keeplog volume: nothing to delete", "volume", raw, "reason", err)
		return &csi.DeleteVolumeResponse{}, nil
	}
	if id.Node != d.cfg.NodeID {
		return nil, status.Errorf(codes.FailedPrecondition, "DeleteVolume %s: the volume lives on node %q and must be deleted by the keeplog plugin there (this is node %q)", raw, id.Node, d.cfg.NodeID)
	}
	unlock, err := d.lock(raw)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := d.store.DeleteVolume(raw); err != nil {
		return nil, storeError(fmt.Errorf("DeleteVolume %s: %w", raw, err))
	}
	d.log.Info("Volume deleted", "volume", raw)
	return &csi.DeleteVolumeResponse{}, nil
}

// ValidateVolumeCapabilities confirms the capabilities keeplog supports for an existing volume.
func (d *Driver) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	raw := req.GetVolumeId()
	if raw == "" {
		return nil, status.Error(codes.InvalidArgument, "ValidateVolumeCapabilities: volume ID is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Errorf(codes.InvalidArgument, "ValidateVolumeCapabilities %s: volume capabilities are required", raw)
	}
	if _, err := d.findVolume(raw, false); err != nil {
		return nil, err
	}
	if err := checkParameters(req.GetParameters()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

// findVolume validates an ID and reads its volume's record. Malformed IDs, IDs of other nodes and unknown IDs all
// answer NotFound: none of them names a volume here.
func (d *Driver) findVolume(raw string, ephemeralOK bool) (*store.Volume, error) {
	if id, err := parseVolumeID(raw); err == nil {
		if id.Node != d.cfg.NodeID {
			return nil, status.Errorf(codes.NotFound, "volume %s lives on node %q, not on this node %q", raw, id.Node, d.cfg.NodeID)
		}
	} else if !ephemeralOK || validateEphemeralID(raw) != nil {
		return nil, status.Errorf(codes.NotFound, "volume %s does not exist: %v", raw, err)
	}
	v, err := d.store.GetVolume(raw)
	if err != nil {
		return nil, storeError(fmt.Errorf("volume %s: %w", raw, err))
	}
	if v.Deleting {
		return nil, status.Errorf(codes.NotFound, "volume %s is being deleted", raw)
	}
	return v, nil
}

// GetCapacity is what a new volume can get on this node, for this node's topology (0 for any other): the root
// filesystem's free space minus what its volumes may still grow into (stats.go).
func (d *Driver) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	if t := req.GetAccessibleTopology(); t != nil && !d.isThisNode(t) {
		return &csi.GetCapacityResponse{AvailableCapacity: 0}, nil
	}
	free, err := d.availableCapacity()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "GetCapacity: %v", err)
	}
	return &csi.GetCapacityResponse{AvailableCapacity: free}, nil
}

// ControllerGetCapabilities reports create/delete and capacity.
func (d *Driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{
			Rpc: &csi.ControllerServiceCapability_RPC{Type: t}}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}
