package podinfo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"k8s.io/client-go/util/retry"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// PV annotations: which pods a volume served, on which node, and where the last one's files are.
const (
	DefaultMaxPods         = 20
	maxPodsAnnotationBytes = 16 << 10
)

// PVAnnotations computes the annotations of a PV that served pod from node at hostPath, given its current
// annotations: pod is appended to the list (moved to the end when listed already), the list cut to maxPods (<= 0:
// DefaultMaxPods) and to maxPodsAnnotationBytes. A malformed list (edited by hand) is started again. changed is false
// when existing already says all this, so a repeated call changes nothing.
func PVAnnotations(existing map[string]string, pod store.PodRef, node, hostPath string, maxPods int) (out map[string]string, changed bool, err error) {
	if err := pod.Validate(); err != nil {
		return nil, false, fmt.Errorf("PV annotations: %w", err)
	}
	if maxPods <= 0 {
		maxPods = DefaultMaxPods
	}
	var pods []store.PodRef
	if raw, ok := existing[api.AnnotationPVPods]; ok {
		if json.Unmarshal([]byte(raw), &pods) != nil {
			pods = nil
		}
	}
	kept := pods[:0:0]
	for _, p := range pods {
		if p.UID != pod.UID {
			kept = append(kept, p)
		}
	}
	kept = append(kept, pod)
	if len(kept) > maxPods {
		kept = kept[len(kept)-maxPods:]
	}
	// Keep the newest entries whose JSON fits in maxPodsAnnotationBytes (always at least the pod itself).
	size, first := 2, len(kept)-1 // "[" + "]"
	for i := len(kept) - 1; i >= 0; i-- {
		b, err := json.Marshal(kept[i])
		if err != nil {
			return nil, false, fmt.Errorf("PV annotations: encode pod list: %w", err)
		}
		size += len(b) + 1 // and a comma
		if size > maxPodsAnnotationBytes && i < len(kept)-1 {
			break
		}
		first = i
	}
	data, err := json.Marshal(kept[first:])
	if err != nil {
		return nil, false, fmt.Errorf("PV annotations: encode pod list: %w", err)
	}
	out = map[string]string{api.AnnotationPVPods: string(data), api.AnnotationPVNode: node, api.AnnotationPVHostPath: hostPath}
	for k, v := range out {
		if old, ok := existing[k]; !ok || old != v {
			changed = true
		}
	}
	return out, changed, nil
}

// PVAnnotator writes the annotations on PVs through the API.
type PVAnnotator struct {
	Client  API
	MaxPods int // <= 0: DefaultMaxPods
}

// Annotate reads PV pvName, computes its annotations with PVAnnotations and applies them with a JSON merge patch
// that carries the resourceVersion read, so that two publishes of the same PV at once (replicas sharing a claim)
// cannot drop each other's pod: the loser gets a Conflict and is retried with a fresh read. Nothing is patched when
// the annotations already say it all. CSI inline ephemeral volumes have no PV: do not call it for them.
func (a *PVAnnotator) Annotate(ctx context.Context, pvName string, pod store.PodRef, node, hostPath string) error {
	if a == nil || a.Client == nil {
		return errors.New("annotate PV: no Kubernetes client")
	}
	if pvName == "" {
		return errors.New("annotate PV: no PV name")
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pv, err := a.Client.GetPV(ctx, pvName)
		if err != nil {
			return err
		}
		want, changed, err := PVAnnotations(pv.Annotations, pod, node, hostPath, a.MaxPods)
		if err != nil || !changed {
			return err
		}
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
			"annotations": want, "resourceVersion": pv.ResourceVersion,
		}})
		if err != nil {
			return err
		}
		return a.Client.PatchPV(ctx, pvName, patch)
	})
	if err != nil {
		return fmt.Errorf("annotate PV %s with pod %s: %w", pvName, pod, err)
	}
	return nil
}
