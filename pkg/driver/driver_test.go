package driver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/mount-utils"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

const testNode = "node-a"

type fixture struct {
	d      *Driver
	st     *store.Store
	m      *mount.FakeMounter
	root   string
	target string // a parent for target paths
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	st, err := store.Open(root, clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	m := mount.NewFakeMounter(nil)
	d, err := New(Config{NodeID: testNode}, Deps{Store: st, Mounter: m, Statfs: func(string) (FSStats, error) {
		return FSStats{TotalBytes: 100 << 30, FreeBytes: 40 << 30, TotalInodes: 1000, FreeInodes: 500}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{d: d, st: st, m: m, root: root, target: filepath.Join(base, "pods")}
}

func mountCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode}}
}

var rwo = mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)

func createReq(name string, size int64) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{rwo},
		CapacityRange: &csi.CapacityRange{RequiredBytes: size}}
}

func podCtx(ns, name, uid string) map[string]string {
	return map[string]string{api.VolumeContextPodNamespace: ns, api.VolumeContextPodName: name, api.VolumeContextPodUID: uid}
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("got code %v (%v), want %v", got, err, code)
	}
}

func (f *fixture) create(t *testing.T, name string) string {
	t.Helper()
	resp, err := f.d.CreateVolume(context.Background(), createReq(name, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetVolume().GetVolumeId()
}

func (f *fixture) publish(id, target string, vc map[string]string) error {
	_, err := f.d.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId: id, TargetPath: target, VolumeCapability: rwo, VolumeContext: vc})
	return err
}

func (f *fixture) unpublish(id, target string) error {
	_, err := f.d.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
	return err
}

func TestCreateVolumeErrors(t *testing.T) {
	f := newFixture(t)
	block := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	tests := []struct {
		name    string
		mutate  func(r *csi.CreateVolumeRequest)
		code    codes.Code
		message string
	}{
		{"no name", func(r *csi.CreateVolumeRequest) { r.Name = "" }, codes.InvalidArgument, "name is required"},
		{"no capabilities", func(r *csi.CreateVolumeRequest) { r.VolumeCapabilities = nil }, codes.InvalidArgument, "capabilities are required"},
		{"block", func(r *csi.CreateVolumeRequest) { r.VolumeCapabilities = []*csi.VolumeCapability{block} }, codes.InvalidArgument, "block volumes"},
		{"multi-node", func(r *csi.CreateVolumeRequest) {
			r.VolumeCapabilities = []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)}
		}, codes.InvalidArgument, "MULTI_NODE_MULTI_WRITER"},
		{"unknown parameter", func(r *csi.CreateVolumeRequest) { r.Parameters = map[string]string{"retainfor": "1h"} }, codes.InvalidArgument, `"retainfor"`},
		{"negative capacity", func(r *csi.CreateVolumeRequest) { r.CapacityRange.RequiredBytes = -1 }, codes.OutOfRange, "negative"},
		{"required over limit", func(r *csi.CreateVolumeRequest) { r.CapacityRange.LimitBytes = 10 }, codes.OutOfRange, "exceed limit"},
		{"other node only", func(r *csi.CreateVolumeRequest) {
			r.AccessibilityRequirements = &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: map[string]string{api.TopologyKey: "node-b"}}}}
		}, codes.ResourceExhausted, "node-b"},
		{"dot-dot name", func(r *csi.CreateVolumeRequest) { r.Name = "a..b" }, codes.InvalidArgument, "'..'"},
		{"parent name", func(r *csi.CreateVolumeRequest) { r.Name = ".." }, codes.InvalidArgument, "volume name"},
		{"slash in name", func(r *csi.CreateVolumeRequest) { r.Name = "a/b" }, codes.InvalidArgument, "volume name"},
		{"NUL in name", func(r *csi.CreateVolumeRequest) { r.Name = "a\x00b" }, codes.InvalidArgument, "volume name"},
		{"over-long name", func(r *csi.CreateVolumeRequest) { r.Name = strings.Repeat("a", 129) }, codes.InvalidArgument, "longer than 128"},
		{"content source", func(r *csi.CreateVolumeRequest) {
			r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "x"}}}
		}, codes.InvalidArgument, "content sources"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := createReq("pvc-1", 100)
			tc.mutate(r)
			_, err := f.d.CreateVolume(context.Background(), r)
			wantCode(t, err, tc.code)
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("message %q does not say %q", err, tc.message)
			}
		})
	}
	vols, err := f.st.ListVolumes()
	if err != nil || len(vols) != 0 {
		t.Fatalf("refused requests left volumes behind: %v %v", vols, err)
	}
}

func TestCreateVolumeIdempotentAndSized(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	req := createReq("pvc-0d6a", 5<<20)
	req.Parameters = map[string]string{"csi.storage.k8s.io/pvc/name": "logs", "csi.storage.k8s.io/pvc/namespace": "team"}
	req.AccessibilityRequirements = &csi.TopologyRequirement{Requisite: []*csi.Topology{
		{Segments: map[string]string{api.TopologyKey: "node-b"}}, {Segments: map[string]string{api.TopologyKey: testNode}}}}
	first, err := f.d.CreateVolume(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	v := first.GetVolume()
	if v.GetCapacityBytes() != 5<<20 {
		t.Errorf("capacity %d, want the requested %d", v.GetCapacityBytes(), 5<<20)
	}
	if v.GetVolumeId() != "v1:node-a:pvc-0d6a" {
		t.Errorf("volume ID %q", v.GetVolumeId())
	}
	if got := v.GetAccessibleTopology(); len(got) != 1 || got[0].GetSegments()[api.TopologyKey] != testNode {
		t.Errorf("accessible topology %v", got)
	}
	again, err := f.d.CreateVolume(ctx, req)
	if err != nil || again.GetVolume().GetVolumeId() != v.GetVolumeId() {
		t.Fatalf("second CreateVolume: %v %v", again, err)
	}
	_, err = f.d.CreateVolume(ctx, createReq("pvc-0d6a", 6<<20))
	wantCode(t, err, codes.AlreadyExists)

	long := strings.Repeat("x", 128)
	resp, err := f.d.CreateVolume(ctx, createReq(long, 1))
	if err != nil {
		t.Fatal(err)
	}
	if id := resp.GetVolume().GetVolumeId(); len(id) > 128 || !strings.Contains(id, "~") {
		t.Errorf("ID of a 128-byte name is %q (%d bytes)", id, len(id))
	}
	// Two long names sharing a prefix stay two volumes.
	other, err := f.d.CreateVolume(ctx, createReq(strings.Repeat("x", 127)+"y", 1))
	if err != nil || other.GetVolume().GetVolumeId() == resp.GetVolume().GetVolumeId() {
		t.Fatalf("long names collided: %v %v", other, err)
	}
}

func TestPublishGivesEachPodItsOwnDirectory(t *testing.T) {
	f := newFixture(t)
	id := f.create(t, "pvc-sts")
	t1, t2 := filepath.Join(f.target, "p1", "mount"), filepath.Join(f.target, "p2", "mount")
	pod1 := podCtx("team", "web-0", "11111111-2222-3333-4444-555555555555")
	pod2 := podCtx("team", "web-0", "66666666-2222-3333-4444-555555555555") // recreated pod, same name

	if err := f.publish(id, t1, pod1); err != nil {
		t.Fatal(err)
	}
	if err := f.publish(id, t1, pod1); err != nil { // kubelet retries: idempotent
		t.Fatalf("second publish: %v", err)
	}
	dir1 := filepath.Join(f.root, "team_web-0_11111111-2222-3333-4444-555555555555")
	if fi, err := os.Stat(dir1); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o777 {
		t.Fatalf("pod directory %s: %v %v", dir1, fi, err)
	}
	if len(f.m.MountPoints) != 1 || f.m.MountPoints[0].Device != dir1 || f.m.MountPoints[0].Path != t1 {
		t.Fatalf("mounts %+v, want %s at %s", f.m.MountPoints, dir1, t1)
	}
	if err := os.WriteFile(filepath.Join(dir1, "gc.log"), []byte("first pod"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.unpublish(id, t1); err != nil {
		t.Fatal(err)
	}
	if err := f.unpublish(id, t1); err != nil {
		t.Fatalf("second unpublish: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(dir1, "gc.log")); err != nil || string(data) != "first pod" {
		t.Fatalf("unpublish lost data: %q %v", data, err)
	}
	if err := f.publish(id, t2, pod2); err != nil {
		t.Fatal(err)
	}
	dirs, err := f.st.PodDirs(id)
	if err != nil || len(dirs) != 2 {
		t.Fatalf("volume owns %v (%v), want two pod directories", dirs, err)
	}
	for _, d := range dirs {
		published := d.UnpublishedAt.IsZero()
		if wantPublished := strings.HasPrefix(d.Dir, "team_web-0_6666"); published != wantPublished {
			t.Errorf("%s: published=%v", d.Dir, published)
		}
	}
	// A published volume cannot be deleted; once unpublished, DeleteVolume removes all its directories.
	_, err = f.d.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: id})
	wantCode(t, err, codes.FailedPrecondition)
	if err := f.unpublish(id, t2); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := f.d.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Fatalf("DeleteVolume #%d: %v", i+1, err)
		}
	}
	entries, _ := os.ReadDir(f.root)
	for _, e := range entries {
		if e.Name() != api.KeeplogDir {
			t.Errorf("left after DeleteVolume: %s", e.Name())
		}
	}
}

func TestPublishErrors(t *testing.T) {
	f := newFixture(t)
	id := f.create(t, "pvc-e")
	other := f.create(t, "pvc-other")
	good := podCtx("ns", "pod", "11111111-2222-3333-4444-555555555555")
	target := filepath.Join(f.target, "t", "mount")
	if err := f.publish(other, filepath.Join(f.target, "o", "mount"), good); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		id     string
		target string
		vc     map[string]string
		cap    *csi.VolumeCapability
		code   codes.Code
	}{
		{"no id", "", target, good, rwo, codes.InvalidArgument},
		{"no target", id, "", good, rwo, codes.InvalidArgument},
		{"no capability", id, target, good, nil, codes.InvalidArgument},
		{"relative target", id, "pods/x", good, rwo, codes.InvalidArgument},
		{"unclean target", id, f.target + "/a/../b", good, rwo, codes.InvalidArgument},
		{"target inside root", id, filepath.Join(f.root, "x"), good, rwo, codes.InvalidArgument},
		{"unknown volume", "v1:node-a:pvc-nope", target, good, rwo, codes.NotFound},
		{"malformed id", "fake-vol-id", target, good, rwo, codes.NotFound},
		{"path in id", "v1:node-a:../../etc", target, good, rwo, codes.NotFound},
		{"other node", "v1:node-b:pvc-e", target, good, rwo, codes.NotFound},
		{"namespace escapes", id, target, podCtx("..", "pod", "11111111-2222-3333-4444-555555555555"), rwo, codes.InvalidArgument},
		{"pod name with slash", id, target, podCtx("ns", "a/b", "11111111-2222-3333-4444-555555555555"), rwo, codes.InvalidArgument},
		{"bad uid", id, target, podCtx("ns", "pod", "../../x"), rwo, codes.InvalidArgument},
		{"partial pod info", id, target, map[string]string{api.VolumeContextPodName: "pod"}, rwo, codes.InvalidArgument},
		{"pod dir of another volume", id, target, good, rwo, codes.FailedPrecondition},
		{"ephemeral with unknown attribute", "csi-abc", target, map[string]string{api.VolumeContextEphemeral: "true", "colour": "red"}, rwo, codes.InvalidArgument},
		{"ephemeral with path id", "../x", target, map[string]string{api.VolumeContextEphemeral: "true"}, rwo, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.d.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
				VolumeId: tc.id, TargetPath: tc.target, VolumeCapability: tc.cap, VolumeContext: tc.vc})
			wantCode(t, err, tc.code)
		})
	}
	if len(f.m.MountPoints) != 1 {
		t.Errorf("refused publishes mounted something: %+v", f.m.MountPoints)
	}
	// Published read-write; the same target read-only is incompatible.
	pod := podCtx("ns", "pod2", "11111111-2222-3333-4444-555555555555")
	if err := f.publish(id, target, pod); err != nil {
		t.Fatal(err)
	}
	_, err := f.d.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId: id, TargetPath: target, VolumeCapability: rwo, VolumeContext: pod, Readonly: true})
	wantCode(t, err, codes.AlreadyExists)
}

func TestBusyVolumeIsAborted(t *testing.T) {
	f := newFixture(t)
	id := f.create(t, "pvc-busy")
	target := filepath.Join(f.target, "b", "mount")
	if !f.d.locks.tryLock(id) {
		t.Fatal("lock taken")
	}
	wantCode(t, f.publish(id, target, nil), codes.Aborted)
	wantCode(t, f.unpublish(id, target), codes.Aborted)
	_, err := f.d.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: id})
	wantCode(t, err, codes.Aborted)
	_, err = f.d.CreateVolume(context.Background(), createReq("pvc-busy", 1<<20))
	wantCode(t, err, codes.Aborted)
	f.d.locks.unlock(id)
	if !f.d.locks.tryLock(target) {
		t.Fatal("lock taken")
	}
	wantCode(t, f.publish(id, target, nil), codes.Aborted)
	f.d.locks.unlock(target)
	if err := f.publish(id, target, nil); err != nil {
		t.Fatalf("publish after the lock went: %v", err)
	}
}

func TestDeleteVolumeCodes(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		id   string
		code codes.Code
	}{
		{"", codes.InvalidArgument},
		{"fake-vol-id-123", codes.OK},
		{"v1:node-a:never-created", codes.OK},
		{"v1:node-b:pvc-x", codes.FailedPrecondition},
	} {
		_, err := f.d.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: tc.id})
		if status.Code(err) != tc.code {
			t.Errorf("DeleteVolume(%q) = %v, want %v", tc.id, err, tc.code)
		}
	}
}

func TestEphemeralVolumeKeepsData(t *testing.T) {
	f := newFixture(t)
	vc := podCtx("ns", "batch", "aaaaaaaa-2222-3333-4444-555555555555")
	vc[api.VolumeContextEphemeral] = "true"
	target := filepath.Join(f.target, "e", "mount")
	if err := f.publish("csi-0123abcd", target, vc); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(f.root, "ns_batch_aaaaaaaa-2222-3333-4444-555555555555")
	if err := os.WriteFile(filepath.Join(dir, "heap.hprof"), []byte("dump"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.unpublish("csi-0123abcd", target); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "heap.hprof")); err != nil {
		t.Fatalf("ephemeral volume lost its data at unpublish: %v", err)
	}
	v, err := f.st.GetVolume("csi-0123abcd")
	if err != nil || v.Kind != store.Ephemeral {
		t.Fatalf("ephemeral record %+v %v", v, err)
	}
	// A persistent ID is never taken for an ephemeral one.
	wantCode(t, f.publish("v1:node-a:x", target, vc), codes.InvalidArgument)
}

func TestRestartKnowsPublishedVolumes(t *testing.T) {
	f := newFixture(t)
	id := f.create(t, "pvc-r")
	live, gone := filepath.Join(f.target, "live", "mount"), filepath.Join(f.target, "gone", "mount")
	if err := f.publish(id, live, podCtx("ns", "a", "11111111-2222-3333-4444-555555555555")); err != nil {
		t.Fatal(err)
	}
	if err := f.publish(id, gone, podCtx("ns", "b", "11111111-2222-3333-4444-555555555556")); err != nil {
		t.Fatal(err)
	}
	// A reboot unmounted one of them; a new driver on the same root must find out and keep the other.
	m := mount.NewFakeMounter([]mount.MountPoint{f.m.MountPoints[0]})
	arc := &archiverRecorder{}
	d2, err := New(Config{NodeID: testNode}, Deps{Store: f.st, Mounter: m, Statfs: f.d.statfs, Archiver: arc})
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.Reconcile(); err != nil {
		t.Fatal(err)
	}
	// The archiver, not running yet, is told which pod directory is still published (so that no walked mark in its
	// journal makes it one it does not watch), and nothing of the one whose mount is gone.
	if want := "ns_a_11111111-2222-3333-4444-555555555555"; len(arc.published) != 1 || filepath.Base(arc.published[0]) != want || len(arc.dirs) != 0 {
		t.Fatalf("archiver told published %v, unpublished %v at Reconcile; want published [%s] only", arc.published, arc.dirs, want)
	}
	targets, err := f.st.Targets(id)
	if err != nil || len(targets) != 1 || targets[0].Path != live {
		t.Fatalf("targets after restart %+v %v, want only %s", targets, err, live)
	}
	if _, err := d2.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: live}); err != nil {
		t.Fatalf("stats after restart: %v", err)
	}
	if _, err := d2.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: live}); err != nil {
		t.Fatalf("unpublish after restart: %v", err)
	}
	if len(m.MountPoints) != 0 {
		t.Errorf("still mounted: %+v", m.MountPoints)
	}
}

func TestVolumeStatsCountOnlyTheVolume(t *testing.T) {
	f := newFixture(t)
	id := f.create(t, "pvc-s")
	target := filepath.Join(f.target, "s", "mount")
	if err := f.publish(id, target, podCtx("ns", "a", "11111111-2222-3333-4444-555555555555")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(f.root, "ns_a_11111111-2222-3333-4444-555555555555")
	if err := os.MkdirAll(filepath.Join(dir, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app", "big"), make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	// Something outside the volume must not count.
	if err := os.WriteFile(filepath.Join(f.root, "stray"), make([]byte, 5<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := f.d.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target})
	if err != nil {
		t.Fatal(err)
	}
	bytes, inodes := resp.GetUsage()[0], resp.GetUsage()[1]
	if bytes.GetUsed() < 3<<20 || bytes.GetUsed() > 4<<20 {
		t.Errorf("used %d bytes, want about 3 MiB", bytes.GetUsed())
	}
	if bytes.GetTotal() != 1<<20 || bytes.GetAvailable() != 0 {
		t.Errorf("total %d available %d, want capacity 1 MiB and nothing available", bytes.GetTotal(), bytes.GetAvailable())
	}
	if inodes.GetUsed() != 3 {
		t.Errorf("used %d inodes, want 3 (pod dir, app, big)", inodes.GetUsed())
	}
	for _, tc := range []struct {
		id, path string
		code     codes.Code
	}{
		{"", target, codes.InvalidArgument},
		{id, "", codes.InvalidArgument},
		{"v1:node-a:nope", target, codes.NotFound},
		{id, "/some/other/path", codes.NotFound},
	} {
		_, err := f.d.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: tc.id, VolumePath: tc.path})
		wantCode(t, err, tc.code)
	}
}

func TestGetCapacityAndInfo(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	resp, err := f.d.GetCapacity(ctx, &csi.GetCapacityRequest{})
	if err != nil || resp.GetAvailableCapacity() != 40<<30 {
		t.Fatalf("capacity %v %v, want the root's free bytes", resp, err)
	}
	resp, err = f.d.GetCapacity(ctx, &csi.GetCapacityRequest{AccessibleTopology: &csi.Topology{Segments: map[string]string{api.TopologyKey: "node-b"}}})
	if err != nil || resp.GetAvailableCapacity() != 0 {
		t.Fatalf("capacity for another node %v %v, want 0", resp, err)
	}
	info, err := f.d.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil || info.GetNodeId() != testNode || info.GetAccessibleTopology().GetSegments()[api.TopologyKey] != testNode {
		t.Fatalf("node info %v %v", info, err)
	}
}
