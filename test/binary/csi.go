package binary

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keeplog/keeplog/pkg/store"
)

// Volume context keys kubelet sends with podInfoOnMount (what pkg/podinfo and pkg/driver read).
const (
	CtxPodName        = "csi.storage.k8s.io/pod.name"
	CtxPodNamespace   = "csi.storage.k8s.io/pod.namespace"
	CtxPodUID         = "csi.storage.k8s.io/pod.uid"
	CtxServiceAccount = "csi.storage.k8s.io/serviceAccount.name"
	CtxEphemeral      = "csi.storage.k8s.io/ephemeral"
)

// Pod is what kubelet tells the driver about the pod a volume is published for.
type Pod struct {
	Namespace, Name, UID, ServiceAccount string
}

// DirName is the pod directory's name under the root: <namespace>_<pod>_<uid>, kubelet's /var/log/pods naming.
func (p Pod) DirName() string { return p.Namespace + "_" + p.Name + "_" + p.UID }

// CSI is a client of keeplog's CSI socket. One client survives keeplog restarts: gRPC reconnects (at most a
// second apart), and each call is retried by its caller as kubelet would.
type CSI struct {
	conn       *grpc.ClientConn
	Node       csi.NodeClient
	Controller csi.ControllerClient
	Identity   csi.IdentityClient
}

// DialCSI connects lazily to the unix socket.
func DialCSI(socket string) (*CSI, error) {
	bc := backoff.DefaultConfig
	bc.MaxDelay = time.Second
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: time.Second}))
	if err != nil {
		return nil, fmt.Errorf("csi client for %s: %w", socket, err)
	}
	return &CSI{conn: conn, Node: csi.NewNodeClient(conn), Controller: csi.NewControllerClient(conn),
		Identity: csi.NewIdentityClient(conn)}, nil
}

// Close closes the connection.
func (c *CSI) Close() error { return c.conn.Close() }

func mountCapability() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

// CreateVolume asks for a volume named like csi-provisioner's PVs (pvc-<uid>) with StorageClass parameters and the
// --extra-create-metadata keys; it returns the volume ID.
func (c *CSI) CreateVolume(ctx context.Context, name string, params map[string]string) (string, error) {
	p := map[string]string{"csi.storage.k8s.io/pv/name": name, "csi.storage.k8s.io/pvc/name": name + "-claim",
		"csi.storage.k8s.io/pvc/namespace": "soak"}
	for k, v := range params {
		p[k] = v
	}
	resp, err := c.Controller.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, Parameters: p,
		VolumeCapabilities: []*csi.VolumeCapability{mountCapability()},
		CapacityRange:      &csi.CapacityRange{RequiredBytes: 1 << 30}})
	if err != nil {
		return "", fmt.Errorf("CreateVolume %s: %w", name, err)
	}
	return resp.GetVolume().GetVolumeId(), nil
}

// Publish is kubelet's NodePublishVolume for pod at target (its parent is created first, as kubelet does). An
// inline ephemeral volume carries its attributes in extra and ephemeral=true; a persistent one the volume context
// CreateVolume returned (none from keeplog) plus the pod information.
func (c *CSI) Publish(ctx context.Context, volumeID, target string, pod Pod, ephemeral bool, extra map[string]string) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		return err
	}
	vc := map[string]string{CtxPodName: pod.Name, CtxPodNamespace: pod.Namespace, CtxPodUID: pod.UID,
		CtxServiceAccount: pod.ServiceAccount, CtxEphemeral: fmt.Sprint(ephemeral)}
	for k, v := range extra {
		vc[k] = v
	}
	_, err := c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: volumeID, TargetPath: target,
		VolumeCapability: mountCapability(), VolumeContext: vc})
	if err != nil {
		return fmt.Errorf("NodePublishVolume %s at %s: %w", volumeID, target, err)
	}
	return nil
}

// Unpublish is kubelet's NodeUnpublishVolume.
func (c *CSI) Unpublish(ctx context.Context, volumeID, target string) error {
	_, err := c.Node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: volumeID, TargetPath: target})
	if err != nil {
		return fmt.Errorf("NodeUnpublishVolume %s at %s: %w", volumeID, target, err)
	}
	return nil
}

// DeleteVolume is csi-provisioner's DeleteVolume.
func (c *CSI) DeleteVolume(ctx context.Context, volumeID string) error {
	if _, err := c.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: volumeID}); err != nil {
		return fmt.Errorf("DeleteVolume %s: %w", volumeID, err)
	}
	return nil
}

// Retry calls f until it succeeds, ctx ends or timeout passes, every 200 ms: kubelet and csi-provisioner retry
// every failed call, and a call made while keeplog restarts fails with Unavailable.
func Retry(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// NewPod names a pod with a fresh random UID (a UUID, as the API server makes them).
func NewPod(namespace, name string) Pod {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	uid := h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	return Pod{Namespace: namespace, Name: name, UID: uid, ServiceAccount: "default"}
}

// Ref is the pod as keeplog's store names it.
func (p Pod) Ref() store.PodRef {
	return store.PodRef{Namespace: p.Namespace, Name: p.Name, UID: p.UID}
}

// EphemeralVolumeID is an inline volume's ID as kubelet makes it: "csi-" and a hash of the pod and volume.
func EphemeralVolumeID(p Pod, volume string) string {
	s := sha256.Sum256([]byte(p.UID + "/" + volume))
	return "csi-" + hex.EncodeToString(s[:])
}
