package archiver

// minWriter is an Upload whose writes (but the last) must be at least a size: an S3 multipart upload's parts are at
// least 5 MiB, and compressed chunks are often smaller.
type minWriter interface {
	minWrite() int64
}

func minWrite(up Upload) int64 {
	if m, ok := up.(minWriter); ok {
		return m.minWrite()
	}
	return 0
}

// partWriter joins consecutive prepared chunks until they reach min bytes, so that each Write is one part of at
// least min bytes (the last may be smaller). A chunk of at least min bytes with nothing pending passes through
// without a copy (every uncompressed chunk at the default chunk size). The progress recorded after a joined write
// is the last chunk's: the journal still holds only acknowledged prefixes, each at a chunk boundary.
type partWriter struct {
	min     int64
	pending []byte
	p       *Progress
}

// add takes the next chunk and returns the bytes to write now (nil: none yet), the progress they complete, and
// whether they are b's own (passed through: b's buffers must outlive the write) rather than a copy.
func (w *partWriter) add(b prepared) ([]byte, *Progress, bool) {
	if len(w.pending) == 0 && int64(len(b.out)) >= w.min {
		return b.out, b.p, true
	}
	w.pending = append(w.pending, b.out...) // b's buffers are reused after this: copy
	w.p = b.p
	if int64(len(w.pending)) < w.min {
		return nil, nil, false
	}
	out, p := w.pending, w.p
	w.pending, w.p = nil, nil
	return out, p, false
}

// rest returns what is pending after the last chunk (a copy: the third result is always false).
func (w *partWriter) rest() ([]byte, *Progress, bool) {
	if len(w.pending) == 0 {
		return nil, nil, false
	}
	out, p := w.pending, w.p
	w.pending, w.p = nil, nil
	return out, p, false
}
