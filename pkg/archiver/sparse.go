package archiver

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/pkg/policy"
)

// Sparse files. A file whose apparent size is far beyond its data (a core dump of a process with large unused
// mappings, a file made with truncate) would hold the cluster's upload slot for the time its holes take on the
// wire, raw: 64 GiB of zeros at 200 Mbit/s is 45 minutes. A file is sparse when its allocation (st_blocks * 512)
// leaves at least sparseMinHoles bytes and more than half of it unallocated, and SEEK_DATA/SEEK_HOLE confirm that
// its data is that small (a compressing filesystem allocates less than the data for a full file). Then, unless its
// policy compresses it anyway, Policy.Sparse decides: "compress" (default: archived as zstd, where holes cost next
// to nothing on the wire; reading them costs local CPU only), "skip" (journalled skipped, the reason in the status
// file, so the GC is not blocked by it) or "upload" (raw, holes and all). Each case is reported by an
// ArchiveSparse Event.

// sparseMinHoles is the least unallocated size that makes a file sparse.
const sparseMinHoles = 64 << 20

// sparseData returns the data bytes of a file that is sparse; ok is false for any other file (or when it cannot
// tell).
func (a *Archiver) sparseData(pod, rel string, st *unix.Stat_t) (int64, bool) {
	alloc := st.Blocks * 512
	if st.Size-alloc < sparseMinHoles || alloc > st.Size/2 {
		return 0, false
	}
	f, fst, err := a.fs.open(pod, rel)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	if fst.Ino != st.Ino || fst.Size != st.Size {
		return 0, false
	}
	data, err := dataBytes(int(f.Fd()), st.Size)
	if err != nil || st.Size-data < sparseMinHoles || data > st.Size/2 {
		return 0, false
	}
	return data, true
}

// dataBytes sums the data extents of an open file with SEEK_DATA/SEEK_HOLE.
func dataBytes(fd int, size int64) (int64, error) {
	var total int64
	for off, n := int64(0), 0; off < size; n++ {
		if n > 1<<16 {
			return 0, fmt.Errorf("more than %d data extents", 1<<16)
		}
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return 0, err
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			return 0, err
		}
		total += h - d
		off = h
	}
	return total, nil
}

// sparseDecision applies the policy to a sparse file that is being journalled; it returns the Event's text.
func sparseDecision(it *Item, pol policy.ArchivePolicy, data int64) string {
	what := fmt.Sprintf("%s is sparse (%d bytes apparent, %d of data)", it.Rel, it.Size, data)
	switch {
	case it.Compression != "":
		return what + ": archived compressed as its policy says; the holes cost next to nothing"
	case pol.Sparse == policy.SparseSkip:
		it.State = StateSkipped
		it.Error = what + ": not archived (archiveSparse: skip)"
		return it.Error
	case pol.Sparse == policy.SparseUpload:
		return what + ": archived raw, holes and all (archiveSparse: upload)"
	default:
		it.Compression = compressionSpec("zstd", 0)
		return what + ": archived compressed with zstd, where holes cost next to nothing (archiveSparse: compress, the default)"
	}
}
