package store

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func openTestStore(t *testing.T) *Store {
	t.Helper()
	st, err := Open(t.TempDir(), clocktesting.NewFakePassiveClock(time.Unix(1000, 0)))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestRecordsCarryTheFormat: volume, pod-directory and target records are written with "format": RecordFormat.
func TestRecordsCarryTheFormat(t *testing.T) {
	st := openTestStore(t)
	if _, err := st.CreateVolume(&Volume{ID: "vol-1", Kind: Persistent, Node: "n"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimPodDir("vol-1", "ns_pod_uid", &PodRef{Namespace: "ns", Name: "pod", UID: "uid"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddTarget("vol-1", Target{Path: "/var/lib/kubelet/pods/uid/volumes/x/mount", PodDir: "ns_pod_uid"}); err != nil {
		t.Fatal(err)
	}
	vdir, _ := st.volumeDir("vol-1")
	recs, _ := filepath.Glob(filepath.Join(vdir, "*", "*.json"))
	recs = append(recs, filepath.Join(vdir, "volume.json"))
	if len(recs) != 3 {
		t.Fatalf("records %v, want volume, pod and target", recs)
	}
	for _, rec := range recs {
		data, err := os.ReadFile(rec)
		var h struct{ Format int }
		if err != nil || json.Unmarshal(data, &h) != nil || h.Format != RecordFormat {
			t.Errorf("%s: format %d (%v), want %d\n%s", rec, h.Format, err, RecordFormat, data)
		}
	}
}

// TestNewerRecordFormatIsRefused: a record a newer keeplog wrote (format RecordFormat+1, and a field this binary
// does not know) is refused with ErrNewerFormat naming the file and both versions, not read as if the unknown
// field were absent; a record from before formats were numbered (no "format") reads as before.
func TestNewerRecordFormatIsRefused(t *testing.T) {
	st := openTestStore(t)
	if _, err := st.CreateVolume(&Volume{ID: "vol-1", Kind: Persistent, Node: "n"}); err != nil {
		t.Fatal(err)
	}
	vdir, _ := st.volumeDir("vol-1")
	rec := filepath.Join(vdir, "volume.json")
	newer := `{"format": 2, "id": "vol-1", "kind": "persistent", "node": "n", "retention": {"clock": "paused"}}`
	if err := os.WriteFile(rec, []byte(newer), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := st.GetVolume("vol-1")
	if !errors.Is(err, ErrNewerFormat) || !strings.Contains(err.Error(), rec) || !strings.Contains(err.Error(), "record format 2") ||
		!strings.Contains(err.Error(), "up to 1") {
		t.Errorf("newer record: %v, want ErrNewerFormat naming %s, format 2 and up to 1", err, rec)
	}
	if _, err := st.ListVolumes(); !errors.Is(err, ErrNewerFormat) {
		t.Errorf("ListVolumes over a newer record: %v, want ErrNewerFormat", err)
	}
	legacy := `{"id": "vol-1", "kind": "persistent", "node": "n", "capacityBytes": 5}`
	if err := os.WriteFile(rec, []byte(legacy), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := st.GetVolume("vol-1"); err != nil || v.CapacityBytes != 5 {
		t.Errorf("record without a format: %+v %v", v, err)
	}
}

func TestStampFormat(t *testing.T) {
	for in, want := range map[string]string{`{}`: `{"format":1}`, `{"a":1}`: `{"format":1,"a":1}`} {
		out, err := stampFormat([]byte(in))
		var got, w any
		_ = json.Unmarshal(out, &got)
		_ = json.Unmarshal([]byte(want), &w)
		if err != nil || !jsonEqual(got, w) {
			t.Errorf("stampFormat(%s) = %s %v, want %s", in, out, err, want)
		}
	}
	if _, err := stampFormat([]byte(`[1]`)); err == nil {
		t.Error("a JSON array accepted as a record")
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestCurrentFormatFastPath: what stampFormat writes is recognised without a second decode, and for every input the
// fast path and the full decode agree (a record of another format, or laid out otherwise, is decoded).
func TestCurrentFormatFastPath(t *testing.T) {
	for _, in := range []string{`{}`, `{"a":1,"b":{"format":2}}`} {
		out, err := stampFormat([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if !currentFormat(out) {
			t.Errorf("stampFormat(%s) = %q is not recognised as format %d: every read decodes it twice", in, out, RecordFormat)
		}
	}
	for in, fast := range map[string]bool{
		"{\n  \"format\": 1,\n  \"a\": 1\n}":  true,
		"{\n  \"format\": 1\n}":               true,
		"{\n  \"format\": 12,\n  \"a\": 1\n}": false, // format 12, not 1
		"{\n  \"format\": 2\n}":               false,
		`{"format":1}`:                        false, // not stampFormat's layout: decoded, and fine
		`{"a":1}`:                             false,
		"{\n  \"format\": 1":                  false, // cut short: decoded, and refused
	} {
		if got := currentFormat([]byte(in)); got != fast {
			t.Errorf("currentFormat(%q) = %v, want %v", in, got, fast)
		}
		var h formatHeader
		decodedOK := json.Unmarshal([]byte(in), &h) == nil && (h.Format == nil || *h.Format == RecordFormat)
		if err := CheckFormat("rec.json", []byte(in)); (err == nil) != decodedOK {
			t.Errorf("CheckFormat(%q) = %v; a full decode says accepted=%v", in, err, decodedOK)
		}
	}
}
