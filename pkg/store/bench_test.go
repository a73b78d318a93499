package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/utils/clock"
)

// BenchmarkOwner10000 finds the owner of one pod directory among 10,000 volumes, as every publish (ClaimPodDir) and
// every policy lookup (Owner) does.
func BenchmarkOwner10000(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "root"), clock.RealClock{})
	if err != nil {
		b.Fatal(err)
	}
	// The records are written directly (no fsync, no owner search each) so that the setup takes seconds.
	var last string
	for i := 0; i < 10000; i++ {
		id := fmt.Sprintf("v1:n:vol-%05d", i)
		vdir, _ := s.volumeDir(id)
		ref := &PodRef{Namespace: "ns", Name: fmt.Sprintf("p-%05d", i), UID: fmt.Sprintf("0f8c6a3e-1d2b-4c5d-8e9f-%012d", i)}
		last = ref.DirName()
		for _, sub := range []string{"pods", "targets"} {
			if err := os.MkdirAll(filepath.Join(vdir, sub), 0o700); err != nil {
				b.Fatal(err)
			}
		}
		for name, rec := range map[string]any{"volume.json": &Volume{ID: id, Kind: Persistent}, "pods/" + last + ".json": &PodDir{Dir: last, Pod: ref}} {
			data, _ := json.Marshal(rec)
			if err := os.WriteFile(filepath.Join(vdir, name), data, 0o600); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, _, err := s.Owner(last); err != nil { // the first lookup reads every record into the index
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if v, _, err := s.Owner(last); err != nil || v.ID != "v1:n:vol-09999" {
			b.Fatalf("owner %v, %v", v, err)
		}
	}
}

// BenchmarkGetVolume reads one volume record as written by CreateVolume (format stamped, indented): every start
// reads each of a node's thousands of records a few times (the usage tracker, the GC, Reconcile, the archiver).
func BenchmarkGetVolume(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "root"), clock.RealClock{})
	if err != nil {
		b.Fatal(err)
	}
	v := &Volume{ID: "v1:node-a:pvc-0f8c6a3e-1d2b-4c5d-8e9f-000000000001", Kind: Persistent, CapacityBytes: 1 << 30,
		Parameters: map[string]string{"csi.storage.k8s.io/pvc/name": "logs", "csi.storage.k8s.io/pvc/namespace": "shop", "retainFor": "168h"}}
	if _, err := s.CreateVolume(v); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetVolume(v.ID); err != nil {
			b.Fatal(err)
		}
	}
}
