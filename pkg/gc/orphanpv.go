package gc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"

	"github.com/go-logr/logr"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/semaphore"
)

const (
	// provisionerFinalizer is csi-provisioner's finalizer on the PVs it made; the provisioner of a vanished node will
	// never remove it.
	provisionerFinalizer = "external-provisioner.volume.kubernetes.io/finalizer"
)

// OrphanConfig configures the clean-up of PVs whose node is gone.
type OrphanConfig struct {
	// Log is where the clean-up logs (the zero Logger discards).
	Log        logr.Logger
	DriverName string
	// TopologyKey is the node-affinity key of keeplog PVs (api.TopologyKey).
	TopologyKey string
	// Grace is how long a PV's node must have been missing before the PV is deleted.
	Grace  time.Duration
	DryRun bool
}

// OrphanPVs deletes keeplog PVs whose node no longer exists, after a grace period. One instance in the cluster runs
// it (RunElected). A PV still Bound to a claim is left alone (the claim is its user's; deleting the PV under it
// would make it Lost): it is reported in the log.
type OrphanPVs struct {
	cfg     OrphanConfig
	kube    *API
	clock   clock.WithTicker
	metrics *metrics
}

// NewOrphanPVs builds the cleaner; g supplies its metrics (may be nil).
func NewOrphanPVs(cfg OrphanConfig, kube *API, clk clock.WithTicker, g *GC) (*OrphanPVs, error) {
	if kube == nil {
		return nil, errors.New("gc: cleaning PVs of vanished nodes needs the Kubernetes API")
	}
	if cfg.Grace <= 0 || cfg.DriverName == "" || cfg.TopologyKey == "" {
		return nil, fmt.Errorf("gc: orphan PV config %+v needs a positive grace, a driver name and a topology key", cfg)
	}
	o := &OrphanPVs{cfg: cfg, kube: kube, clock: clk}
	if g != nil {
		o.metrics = g.metrics
	}
	return o, nil
}

// Pass looks at every PV of the driver once and returns the PVs it deleted.
func (o *OrphanPVs) Pass(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*apiTimeout)
	defer cancel()
	list, err := o.kube.PVs.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("gc: list PVs: %w", err)
	}
	now := o.clock.Now()
	nodes := map[string]bool{} // node name -> exists
	var deleted []string
	var errs []error
	for i := range list.Items {
		pv := &list.Items[i]
		if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != o.cfg.DriverName || pv.DeletionTimestamp != nil {
			continue
		}
		node := o.pvNode(pv)
		if node == "" {
			continue
		}
		exists, ok := nodes[node]
		if !ok {
			_, err := o.kube.Nodes.Get(ctx, node, metav1.GetOptions{})
			switch {
			case err == nil:
				exists = true
			case apierrors.IsNotFound(err):
				exists = false
			default:
				errs = append(errs, fmt.Errorf("gc: read node %s of PV %s: %w", node, pv.Name, err))
				continue
			}
			nodes[node] = exists
		}
		gone, err := o.handle(ctx, pv, node, exists, now)
		if err != nil {
			errs = append(errs, err)
		}
		if gone {
			deleted = append(deleted, pv.Name)
		}
	}
	return deleted, errors.Join(errs...)
}

func (o *OrphanPVs) handle(ctx context.Context, pv *corev1.PersistentVolume, node string, exists bool, now time.Time) (bool, error) {
	pvs := o.kube.PVs
	since, marked := pv.Annotations[api.AnnotationPVNodeMissingSince]
	if exists {
		if marked && !o.cfg.DryRun {
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:null}}}`, api.AnnotationPVNodeMissingSince)
			if _, err := pvs.Patch(ctx, pv.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return false, fmt.Errorf("gc: unmark PV %s (node %s is back): %w", pv.Name, node, err)
			}
		}
		return false, nil
	}
	t, err := time.Parse(time.RFC3339, since)
	if !marked || err != nil {
		o.cfg.Log.Info("PV's node does not exist; it is deleted after the grace period unless the node comes back", "pv", pv.Name, "node", node, "grace", o.cfg.Grace)
		if o.cfg.DryRun {
			return false, nil
		}
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, api.AnnotationPVNodeMissingSince, now.UTC().Format(time.RFC3339))
		if _, err := pvs.Patch(ctx, pv.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("gc: mark PV %s (node %s missing): %w", pv.Name, node, err)
		}
		return false, nil
	}
	if now.Sub(t) < o.cfg.Grace {
		return false, nil
	}
	if pv.Status.Phase == corev1.VolumeBound {
		o.cfg.Log.Info("PV's node is gone but the PV is still bound to a claim; delete the claim to let it go", "pv", pv.Name, "node", node,
			"claim", claimName(pv), "missingSince", since)
		return false, nil
	}
	if o.cfg.DryRun {
		o.cfg.Log.Info("Dry run: would delete the PV of a vanished node", "pv", pv.Name, "node", node, "missingSince", since)
		return false, nil
	}
	// The provisioner of the vanished node never removes its finalizer: it goes first, then the PV.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := pvs.Get(ctx, pv.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != pv.UID || !slices.Contains(cur.Finalizers, provisionerFinalizer) {
			return nil
		}
		cur.Finalizers = slices.DeleteFunc(cur.Finalizers, func(f string) bool { return f == provisionerFinalizer })
		_, err = pvs.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return o.goneMeanwhile(pv)
	}
	if err != nil {
		return false, fmt.Errorf("gc: remove csi-provisioner's finalizer from PV %s (node %s gone): %w", pv.Name, node, err)
	}
	uid := pv.UID
	err = pvs.Delete(ctx, pv.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) {
		return o.goneMeanwhile(pv)
	}
	if err != nil {
		return false, fmt.Errorf("gc: delete PV %s (node %s gone since %s): %w", pv.Name, node, since, err)
	}
	if o.metrics != nil {
		o.metrics.pvs.WithLabelValues("node_gone").Inc()
	}
	o.cfg.Log.Info("Deleted the PV of a vanished node", "pv", pv.Name, "node", node, "missingSince", since)
	return true, nil
}

// goneMeanwhile: the PV was deleted by someone else (an admin, a previous leader) since the list; it is not counted
// or reported as this collector's deletion.
func (o *OrphanPVs) goneMeanwhile(pv *corev1.PersistentVolume) (bool, error) {
	o.cfg.Log.V(2).Info("PV of a vanished node was deleted meanwhile by someone else", "pv", pv.Name)
	return false, nil
}

// pvNode is the node a keeplog PV lives on: its node affinity on the topology key, else the node in its volume
// handle (v1:<node>:<name>).
func (o *OrphanPVs) pvNode(pv *corev1.PersistentVolume) string {
	if na := pv.Spec.NodeAffinity; na != nil && na.Required != nil {
		for _, term := range na.Required.NodeSelectorTerms {
			for _, e := range term.MatchExpressions {
				if e.Key == o.cfg.TopologyKey && e.Operator == corev1.NodeSelectorOpIn && len(e.Values) == 1 {
					return e.Values[0]
				}
			}
		}
	}
	if parts := strings.SplitN(pv.Spec.CSI.VolumeHandle, ":", 3); len(parts) == 3 && parts[0] == "v1" {
		return parts[1]
	}
	return ""
}

func claimName(pv *corev1.PersistentVolume) string {
	if pv.Spec.ClaimRef == nil {
		return ""
	}
	return pv.Spec.ClaimRef.Namespace + "/" + pv.Spec.ClaimRef.Name
}

// LeaderConfig names the Lease of the leader election.
type LeaderConfig struct {
	// Log is where the election logs (the zero Logger discards).
	Log                       logr.Logger
	Namespace, Name, Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod as in client-go's leaderelection; zero means 15s, 10s, 2s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// RunElected runs lead while this instance holds the Lease, and campaigns again whenever it loses it, until ctx
// ends. lead must return when its context ends.
//
// The Lease is a one-slot pkg/semaphore, not client-go's leaderelection, whose package links client-go's full
// clientset and informers (every API group) for its Lease candidates. It keeps leaderelection's record (holder,
// duration, acquire and renew times, transitions, in the Lease named cfg.Name) and timing: a holder renews every
// LeaseDuration-RenewDeadline and stops leading when it could not renew for RenewDeadline (a renewal still in
// flight included; with a RenewDeadline of at least two thirds of LeaseDuration, as the defaults: pkg/semaphore
// lengthens a shorter one to LeaseDuration less half of it, so that a renewal can be tried); a contender retries
// every RetryPeriod and takes the Lease LeaseDuration after its last renewal; the holder releases it when ctx
// ends.
func RunElected(ctx context.Context, leases semaphore.Leases, cfg LeaderConfig, lead func(ctx context.Context)) error {
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	if cfg.RenewDeadline <= 0 || cfg.RenewDeadline >= cfg.LeaseDuration || cfg.RetryPeriod <= 0 {
		return fmt.Errorf("gc: leader election on Lease %s/%s: the renew deadline %v must be positive and below the lease duration %v, the retry period %v positive",
			cfg.Namespace, cfg.Name, cfg.RenewDeadline, cfg.LeaseDuration, cfg.RetryPeriod)
	}
	lease, err := semaphore.New(leases, semaphore.Config{Namespace: cfg.Namespace, Prefix: cfg.Name, Slots: 1, Single: true,
		Holder: cfg.Identity, LeaseDuration: cfg.LeaseDuration, RenewInterval: cfg.LeaseDuration - cfg.RenewDeadline,
		RetryInterval: cfg.RetryPeriod}, nil)
	if err != nil {
		return fmt.Errorf("gc: leader election on Lease %s/%s: %w", cfg.Namespace, cfg.Name, err)
	}
	for ctx.Err() == nil {
		held, release, err := lease.Acquire(ctx)
		if err != nil {
			return nil // ctx ended
		}
		cfg.Log.Info("Leading the cluster-wide garbage collection", "lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity)
		lead(held)
		release()
		cfg.Log.Info("No longer leading the cluster-wide garbage collection", "lease", cfg.Namespace+"/"+cfg.Name)
		select {
		case <-ctx.Done():
		case <-time.After(cfg.RetryPeriod):
		}
	}
	return nil
}

// Run makes a pass every interval until ctx ends (meant as RunElected's lead).
func (o *OrphanPVs) Run(ctx context.Context, interval time.Duration) {
	t := o.clock.NewTicker(interval)
	defer t.Stop()
	for {
		if deleted, err := o.Pass(ctx); err != nil {
			o.cfg.Log.Error(err, "Orphan PV pass failed; retrying at the next one")
		} else if len(deleted) > 0 {
			o.cfg.Log.Info("Deleted PVs of vanished nodes", "pvs", deleted)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}
