package driver

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// fakeAdmission refuses while full is set, and counts the questions.
type fakeAdmission struct {
	full  bool
	asked int
}

func (a *fakeAdmission) AdmitVolume() error {
	a.asked++
	if a.full {
		return errors.New("keeplog root /r is 96.0% full (96 B used, 4 B available), at or past the hard limit of 95% (--disk-hard-limit)")
	}
	return nil
}

func TestCreateVolumeRefusedPastHardLimit(t *testing.T) {
	f := newFixture(t)
	adm := &fakeAdmission{}
	f.d.admission = adm
	existing := f.create(t, "pvc-existing")
	adm.full = true
	_, err := f.d.CreateVolume(context.Background(), createReq("pvc-new", 1<<20))
	wantCode(t, err, codes.ResourceExhausted)
	if !strings.Contains(err.Error(), "pvc-new") || !strings.Contains(err.Error(), "96.0% full") || !strings.Contains(err.Error(), "--disk-hard-limit") {
		t.Fatalf("message %q must name the volume, the usage and the limit", err)
	}
	vols, _ := f.st.ListVolumes()
	if len(vols) != 1 || vols[0].ID != existing {
		t.Fatalf("a refused volume was recorded: %+v", vols)
	}
	// A retried CreateVolume of a volume that exists is idempotent, disk full or not.
	resp, err := f.d.CreateVolume(context.Background(), createReq("pvc-existing", 1<<20))
	if err != nil || resp.GetVolume().GetVolumeId() != existing {
		t.Fatalf("retry of an existing volume: %v", err)
	}
	// A new pod on an existing volume is not a new volume.
	if err := f.publish(existing, filepath.Join(f.target, "a"), podCtx("ns", "p", "0f8c6a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f")); err != nil {
		t.Fatalf("publish of an existing volume past the hard limit: %v", err)
	}
	adm.full = false
	if _, err := f.d.CreateVolume(context.Background(), createReq("pvc-new", 1<<20)); err != nil {
		t.Fatalf("after space was freed: %v", err)
	}
}

func TestInlineVolumeRefusedPastHardLimit(t *testing.T) {
	f := newFixture(t)
	adm := &fakeAdmission{full: true}
	f.d.admission = adm
	vc := podCtx("ns", "p", "0f8c6a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f")
	vc[api.VolumeContextEphemeral] = "true"
	target := filepath.Join(f.target, "inline")
	err := f.publish("csi-0123abcd", target, vc)
	wantCode(t, err, codes.ResourceExhausted)
	if !strings.Contains(err.Error(), "csi-0123abcd") || !strings.Contains(err.Error(), "hard limit") {
		t.Fatalf("message %q", err)
	}
	if _, err := f.st.GetVolume("csi-0123abcd"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused inline volume was recorded: %v", err)
	}
	adm.full = false
	if err := f.publish("csi-0123abcd", target, vc); err != nil {
		t.Fatal(err)
	}
	// Published again (kubelet retries, or a remount) while full: the volume exists, so it is admitted.
	adm.full = true
	asked := adm.asked
	if err := f.publish("csi-0123abcd", target, vc); err != nil {
		t.Fatalf("republish of an existing inline volume past the hard limit: %v", err)
	}
	if adm.asked != asked {
		t.Fatal("admission asked about a volume that exists")
	}
}
