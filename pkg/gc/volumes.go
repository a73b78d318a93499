package gc

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keeplog/keeplog/pkg/store"
)

// newVolumeGrace protects a volume created moments ago and not yet published (CreateVolume, or the first publish of
// an inline volume before it claims its directory) from looking like one whose directories are all gone.
const newVolumeGrace = 5 * time.Minute

// apiTimeout bounds each API call of a pass.
const apiTimeout = 10 * time.Second

// reclaimPatch switches a PV to reclaim policy Delete; csi-provisioner then calls DeleteVolume for it on its node.
const reclaimPatch = `{"spec":{"persistentVolumeReclaimPolicy":"Delete"}}`

// cleanVolumes handles the volumes left with no directory and not published:
//   - a CSI inline ephemeral volume (no PV): its record is deleted here;
//   - a persistent volume whose PV is Released: the PV's reclaim policy becomes Delete, so csi-provisioner calls
//     DeleteVolume, which removes the records and then the PV through the normal CSI path;
//   - a persistent volume whose PV no longer exists (deleted by hand): its record is deleted after OrphanGrace.
func (g *GC) cleanVolumes(ctx context.Context, inv *inventory, now time.Time, res *Result) error {
	var errs []error
	for _, vs := range inv.volumes {
		v := vs.v
		if vs.remaining() > 0 || vs.targets > 0 {
			continue
		}
		switch {
		case v.Kind == store.Ephemeral:
			if now.Sub(v.CreatedAt) < newVolumeGrace && !vs.hadDeleted {
				continue
			}
			errs = append(errs, g.deleteRecord(v, "CSI inline volume without directories", res))
		case v.Kind == store.Persistent && g.kube != nil && v.Name != "":
			// Only a Released PV is let go, so a new volume (its PV not yet created, or Bound) needs no grace here.
			errs = append(errs, g.reclaimPV(ctx, v, now, res))
		}
	}
	return errors.Join(errs...)
}

func (g *GC) deleteRecord(v *store.Volume, why string, res *Result) error {
	if g.cfg.DryRun {
		g.log.Info("Dry run: would delete the volume's record", "volume", v.ID, "why", why)
		return nil
	}
	if err := g.store.DeleteVolume(v.ID); err != nil {
		if errors.Is(err, store.ErrInUse) {
			return nil // published since the pass looked
		}
		return fmt.Errorf("gc: delete record of volume %s (%s): %w", v.ID, why, err)
	}
	res.Volumes = append(res.Volumes, v.ID)
	g.log.Info("Deleted the volume's record", "volume", v.ID, "why", why)
	return nil
}

// reclaimPV lets the PV of a persistent volume without directories go, when it is Released.
func (g *GC) reclaimPV(ctx context.Context, v *store.Volume, now time.Time, res *Result) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	pvs := g.kube.PVs
	pv, err := pvs.Get(ctx, v.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if now.Sub(v.CreatedAt) < max(g.cfg.OrphanGrace, newVolumeGrace) {
			return nil // csi-provisioner may still be creating the PV
		}
		return g.deleteRecord(v, fmt.Sprintf("its PV %s no longer exists", v.Name), res)
	}
	if err != nil {
		return fmt.Errorf("gc: read PV %s of volume %s: %w", v.Name, v.ID, err)
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != g.cfg.DriverName || pv.Spec.CSI.VolumeHandle != v.ID {
		g.log.V(2).Info("PV of that name is not this volume's; left alone", "pv", pv.Name, "volume", v.ID)
		return nil
	}
	if pv.Status.Phase != corev1.VolumeReleased || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		return nil
	}
	if g.cfg.DryRun {
		g.log.Info("Dry run: would set the Released PV's reclaim policy to Delete", "pv", pv.Name, "volume", v.ID)
		return nil
	}
	if _, err := pvs.Patch(ctx, pv.Name, types.MergePatchType, []byte(reclaimPatch), metav1.PatchOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("gc: set reclaim policy Delete on Released PV %s: %w", pv.Name, err)
	}
	g.metrics.pvs.WithLabelValues("released").Inc()
	res.ReclaimedPVs = append(res.ReclaimedPVs, pv.Name)
	g.log.Info("Released PV has no directories left: reclaim policy set to Delete, csi-provisioner deletes it", "pv", pv.Name, "volume", v.ID)
	return nil
}
