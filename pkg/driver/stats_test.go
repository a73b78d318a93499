package driver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/usage"
)

type fakeUsage struct {
	status   map[string]usage.Status
	reserved int64
}

func (f *fakeUsage) Status(id string) (usage.Status, bool) { s, ok := f.status[id]; return s, ok }
func (f *fakeUsage) Reserved() (int64, bool)               { return f.reserved, f.status != nil }

// decodeCondition reads NodeGetVolumeStatsResponse field 2 (VolumeCondition of CSI <= 1.12) from the wire bytes,
// as kubelet's older bindings would.
func decodeCondition(t *testing.T, resp *csi.NodeGetVolumeStatsResponse) (abnormal bool, msg string, found bool) {
	t.Helper()
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		if num == 2 && typ == protowire.BytesType {
			inner, n := protowire.ConsumeBytes(b)
			b = b[n:]
			found = true
			for len(inner) > 0 {
				inum, ityp, n := protowire.ConsumeTag(inner)
				inner = inner[n:]
				switch {
				case inum == 1 && ityp == protowire.VarintType:
					v, n := protowire.ConsumeVarint(inner)
					inner, abnormal = inner[n:], v == 1
				case inum == 2 && ityp == protowire.BytesType:
					s, n := protowire.ConsumeString(inner)
					inner, msg = inner[n:], s
				default:
					t.Fatalf("unexpected field %d in VolumeCondition", inum)
				}
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		b = b[n:]
	}
	return abnormal, msg, found
}

func TestVolumeStatsFromTrackerAndCondition(t *testing.T) {
	f := newFixture(t)
	id := f.create(t, "pvc-c")
	target := filepath.Join(f.target, "c", "mount")
	uid := "11111111-2222-3333-4444-555555555555"
	if err := f.publish(id, target, podCtx("ns", "c", uid)); err != nil {
		t.Fatal(err)
	}
	fu := &fakeUsage{status: map[string]usage.Status{}}
	f.d.usage = fu
	ctx := context.Background()
	req := &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target}

	// The tracker's numbers are reported, not a walk's (the directory is nearly empty).
	fu.status[id] = usage.Status{Usage: usage.Usage{Bytes: 300 << 10, Inodes: 7}, LimitBytes: 1 << 20}
	resp, err := f.d.NodeGetVolumeStats(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	b := resp.GetUsage()[0]
	if b.GetUsed() != 300<<10 || b.GetTotal() != 1<<20 || b.GetAvailable() != 1<<20-300<<10 || resp.GetUsage()[1].GetUsed() != 7 {
		t.Fatalf("usage %v, want the tracker's 300 KiB of 1 MiB and 7 inodes", resp.GetUsage())
	}
	if abnormal, msg, found := decodeCondition(t, resp); !found || abnormal || msg != "ok" {
		t.Fatalf("condition abnormal=%v msg=%q found=%v, want a normal condition", abnormal, msg, found)
	}

	fu.status[id] = usage.Status{Usage: usage.Usage{Bytes: 2 << 20}, LimitBytes: 1 << 20, OverLimit: true, Blocked: []string{"x"}}
	resp, err = f.d.NodeGetVolumeStats(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if abnormal, msg, _ := decodeCondition(t, resp); !abnormal || !strings.Contains(msg, "over its limit") || !strings.Contains(msg, "blocked") {
		t.Fatalf("condition abnormal=%v msg=%q, want abnormal over limit and blocked", abnormal, msg)
	}
	if resp.GetUsage()[0].GetAvailable() != 0 {
		t.Fatalf("available %d over the limit, want 0", resp.GetUsage()[0].GetAvailable())
	}

	fu.status[id] = usage.Status{LimitBytes: 1 << 20}
	if err := os.RemoveAll(filepath.Join(f.root, "ns_c_"+uid)); err != nil {
		t.Fatal(err)
	}
	resp, err = f.d.NodeGetVolumeStats(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if abnormal, msg, _ := decodeCondition(t, resp); !abnormal || !strings.Contains(msg, "gone") {
		t.Fatalf("condition abnormal=%v msg=%q, want abnormal: directory gone", abnormal, msg)
	}
}

// TestVolumeStatsWithoutTracker: an untracked volume is measured once, its limit checked all the same.
func TestVolumeStatsWithoutTracker(t *testing.T) {
	f := newFixture(t)
	id := f.create(t, "pvc-u") // 1 MiB
	target := filepath.Join(f.target, "u", "mount")
	uid := "11111111-2222-3333-4444-666666666666"
	if err := f.publish(id, target, podCtx("ns", "u", uid)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.root, "ns_u_"+uid, "big"), make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	f.d.usage = &fakeUsage{} // knows nothing yet
	resp, err := f.d.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetUsage()[0].GetUsed() < 2<<20 {
		t.Fatalf("used %d, want at least 2 MiB from a walk", resp.GetUsage()[0].GetUsed())
	}
	if abnormal, msg, _ := decodeCondition(t, resp); !abnormal || !strings.Contains(msg, "over its limit") {
		t.Fatalf("condition abnormal=%v msg=%q, want over limit", abnormal, msg)
	}
}

func TestCapacityMinusReserved(t *testing.T) {
	f := newFixture(t) // 40 GiB free
	ctx := context.Background()
	f.d.usage = &fakeUsage{status: map[string]usage.Status{}, reserved: 10 << 30}
	resp, err := f.d.GetCapacity(ctx, &csi.GetCapacityRequest{AccessibleTopology: &csi.Topology{Segments: map[string]string{api.TopologyKey: testNode}}})
	if err != nil || resp.GetAvailableCapacity() != 30<<30 {
		t.Fatalf("capacity %v %v, want 40 GiB free minus 10 GiB reserved", resp, err)
	}
	f.d.usage = &fakeUsage{status: map[string]usage.Status{}, reserved: 50 << 30}
	if resp, err := f.d.GetCapacity(ctx, &csi.GetCapacityRequest{}); err != nil || resp.GetAvailableCapacity() != 0 {
		t.Fatalf("capacity %v %v, want 0 when more is reserved than free", resp, err)
	}
	f.d.usage = &fakeUsage{} // not measured yet: plain free space
	if resp, err := f.d.GetCapacity(ctx, &csi.GetCapacityRequest{}); err != nil || resp.GetAvailableCapacity() != 40<<30 {
		t.Fatalf("capacity %v %v, want the plain free space", resp, err)
	}
}

func TestNodeCapabilitiesDeclareVolumeCondition(t *testing.T) {
	f := newFixture(t)
	resp, err := f.d.NodeGetCapabilities(context.Background(), &csi.NodeGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []csi.NodeServiceCapability_RPC_Type
	for _, c := range resp.GetCapabilities() {
		got = append(got, c.GetRpc().GetType())
	}
	if len(got) != 2 || got[0] != csi.NodeServiceCapability_RPC_GET_VOLUME_STATS || got[1] != 4 {
		t.Fatalf("capabilities %v, want GET_VOLUME_STATS and VOLUME_CONDITION (4)", got)
	}
}
