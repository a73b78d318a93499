package driver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
	"github.com/keeplog/keeplog/pkg/usage"
)

// UsageReporter reports volumes' usage kept current elsewhere (pkg/usage's Tracker), so that no CSI call walks a
// volume.
type UsageReporter interface {
	// Status is a volume's usage and limit state; false while it is not measured yet.
	Status(volumeID string) (usage.Status, bool)
	// Reserved is what volumes may still grow into (limit minus usage of each volume that is published or not used
	// yet); false while not measured yet.
	Reserved() (int64, bool)
}

// nodeVolumeCondition is the node capability VOLUME_CONDITION (wire value 4) of CSI 1.3–1.12. CSI 1.13, whose Go
// bindings keeplog uses, removed it and the VolumeCondition field of NodeGetVolumeStatsResponse, but kubelet (up to
// at least 1.34, with the CSIVolumeHealth feature gate) still asks for both.
const nodeVolumeCondition csi.NodeServiceCapability_RPC_Type = 4

// volumeStatsConditionField is NodeGetVolumeStatsResponse.volume_condition (field 2) of CSI 1.3–1.12.
const volumeStatsConditionField protowire.Number = 2

// volumeStats measures a published volume: its usage (from the UsageReporter, else one walk), its limit, and its
// condition — abnormal when the pod directory published at this target is gone or the volume is over its limit.
func (d *Driver) volumeStats(vol *store.Volume, t *store.Target) (*csi.NodeGetVolumeStatsResponse, error) {
	var st usage.Status
	tracked := false
	if d.usage != nil {
		st, tracked = d.usage.Status(vol.ID)
	}
	if !tracked {
		// Not measured yet (just published, or no tracker): one walk, the only one this volume gets from a call.
		u, err := d.store.VolumeUsage(vol.ID)
		if err != nil {
			return nil, err
		}
		st.Bytes, st.Inodes = u.Bytes, u.Inodes
		st.LimitBytes = vol.CapacityBytes
		if st.LimitBytes <= 0 {
			p, _ := policy.Resolve(vol.Parameters, nil, policy.Defaults{})
			st.LimitBytes = p.SizeBytes
		}
		st.OverLimit = st.LimitBytes > 0 && st.Bytes > st.LimitBytes
	}
	fsst, err := d.statfs(d.store.Root())
	if err != nil {
		return nil, err
	}
	total := st.LimitBytes
	if total <= 0 {
		total = fsst.TotalBytes
	}
	avail := min(max(total-st.Bytes, 0), fsst.FreeBytes)
	resp := &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{
		{Unit: csi.VolumeUsage_BYTES, Total: total, Used: st.Bytes, Available: avail},
		{Unit: csi.VolumeUsage_INODES, Total: fsst.TotalInodes, Used: st.Inodes, Available: fsst.FreeInodes},
	}}
	abnormal, msg := d.condition(t, st)
	resp.ProtoReflect().SetUnknown(volumeCondition(abnormal, msg))
	return resp, nil
}

// condition says what is wrong with a published volume, if anything.
func (d *Driver) condition(t *store.Target, st usage.Status) (bool, string) {
	path, err := d.store.PodDirPath(t.PodDir)
	if err != nil {
		return true, err.Error()
	}
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return true, fmt.Sprintf("the volume's directory %s is gone from the node; the pod writes into a deleted directory", path)
	} else if err != nil {
		return true, fmt.Sprintf("the volume's directory %s cannot be read: %v", path, err)
	}
	if st.OverLimit {
		msg := fmt.Sprintf("the volume uses %d bytes, over its limit of %d bytes", st.Bytes, st.LimitBytes)
		if len(st.Blocked) > 0 {
			msg += "; writes are blocked until it is back under the limit"
		}
		return true, msg
	}
	return false, "ok"
}

// volumeCondition encodes a VolumeCondition{abnormal, message} message as field 2 of NodeGetVolumeStatsResponse.
func volumeCondition(abnormal bool, msg string) []byte {
	var inner []byte
	if abnormal {
		inner = protowire.AppendTag(inner, 1, protowire.VarintType)
		inner = protowire.AppendVarint(inner, 1)
	}
	if msg != "" {
		inner = protowire.AppendTag(inner, 2, protowire.BytesType)
		inner = protowire.AppendString(inner, msg)
	}
	out := protowire.AppendTag(nil, volumeStatsConditionField, protowire.BytesType)
	return protowire.AppendBytes(out, inner)
}

// availableCapacity is what a new volume can get on this node: the root filesystem's free bytes minus what the
// volumes here may still grow into (UsageReporter.Reserved), or the plain free bytes while that is not known.
func (d *Driver) availableCapacity() (int64, error) {
	st, err := d.statfs(d.store.Root())
	if err != nil {
		return 0, err
	}
	if d.usage == nil {
		return st.FreeBytes, nil
	}
	reserved, ok := d.usage.Reserved()
	if !ok {
		return st.FreeBytes, nil
	}
	return max(st.FreeBytes-reserved, 0), nil
}
