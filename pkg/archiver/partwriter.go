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

// add takes the next chunk and returns the bytes to write now (nil: none yet) and the progress they complete.
func (w *partWriter) add(b prepared) ([]byte, *Progress) {
	if len(w.pending) == 0 && int64(len(b.out)) >= w.min {
		return b.out, b.p
	}
	w.pending = append(w.pending, b.out...) // b's buffers are reused after this: copy
	w.p = b.p
	if int64(len(w.pending)) < w.min {
		return nil, nil
	}
	out, p := w.pending, w.p
	w.pending, w.p = nil, nil
	return out, p
}

// rest returns what is pending after the last chunk.
func (w *partWriter) rest() ([]byte, *Progress) {
	if len(w.pending) == 0 {
		return nil, nil
	}
	out, p := w.pending, w.p
	w.pending, w.p = nil, nil
	return out, p
}
