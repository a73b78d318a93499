package units

import "testing"

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
		8 << 30: "8.0 GiB", 5<<60 + 1<<59: "5.5 EiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := Bytes(uint64(99 << 20)); got != "99.0 MiB" {
		t.Errorf("Bytes(uint64 99 MiB) = %q", got)
	}
	if got := Bytes(int64(-5)); got != "-5 B" {
		t.Errorf("Bytes(-5) = %q", got)
	}
}
