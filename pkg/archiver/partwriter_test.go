package archiver

import (
	"bytes"
	"testing"
)

// Compressed chunks smaller than S3's 5 MiB part minimum are joined; every write but the last reaches the minimum,
// the bytes are the chunks' in order, and each write's progress is its last chunk's.
func TestPartWriterJoinsSmallChunks(t *testing.T) {
	w := &partWriter{min: 10}
	var got [][]byte
	var last []int64
	var all []byte
	for i, n := range []int{3, 4, 12, 2, 9, 1} {
		b := prepared{out: bytes.Repeat([]byte{byte('a' + i)}, n), p: &Progress{Stored: int64(i)}}
		all = append(all, b.out...)
		if out, p, _ := w.add(b); out != nil {
			got, last = append(got, append([]byte(nil), out...)), append(last, p.Stored)
		}
		for j := range b.out {
			b.out[j] = 0 // the pipeline reuses the buffer
		}
	}
	if out, p, _ := w.rest(); out != nil {
		got, last = append(got, out), append(last, p.Stored)
	}
	if !bytes.Equal(bytes.Join(got, nil), all) {
		t.Fatalf("writes %q, want the chunks' bytes %q", got, all)
	}
	for i, g := range got[:len(got)-1] {
		if len(g) < 10 {
			t.Errorf("write %d has %d bytes, below the minimum 10", i, len(g))
		}
	}
	// 3+4+12 = 19 (ends at chunk 2), 2+9 = 11 (chunk 4), 1 (chunk 5, the last).
	if want := []int64{2, 4, 5}; len(last) != 3 || last[0] != want[0] || last[1] != want[1] || last[2] != want[2] {
		t.Errorf("progress after each write %v, want %v", last, want)
	}
}
