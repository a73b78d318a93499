package driver

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keeplog/keeplog/pkg/store"
)

// Admission decides whether a new volume may be created on this node (pkg/gc refuses new volumes while the root's
// filesystem is past its hard limit).
type Admission interface {
	// AdmitVolume returns nil to admit, or an error saying why not (the root, its usage and the limit).
	AdmitVolume() error
}

// admitNew asks the Admission about a volume ID that has no record yet; an existing volume (a retried call) is
// always admitted, so CreateVolume stays idempotent. A refusal is ResourceExhausted.
func (d *Driver) admitNew(method, id string) error {
	if d.admission == nil {
		return nil
	}
	if _, err := d.store.GetVolume(id); !errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err := d.admission.AdmitVolume(); err != nil {
		return status.Errorf(codes.ResourceExhausted, "%s %s: %v", method, id, err)
	}
	return nil
}
