package archiver

import (
	"context"
	"os"
)

// prepared is one chunk ready for the wire: read, compressed (or not) and hashed, with the digests' state after it.
type prepared struct {
	raw, out []byte // out is raw itself when not compressed
	zbuf     []byte // the compressed bytes' buffer, kept with the set for the next chunk
	p        *Progress
	err      error
}

// prepareChunks reads, compresses and hashes the chunks from raw/stored on, in order, ahead of the sender: the
// next chunk is compressed while the current ones are on the wire, so compression adds CPU but not time (it was
// serial: at 25 MiB/s a 4.4x smaller heap dump took 0.38x the time of the raw one instead of about 0.25x). At most
// buffers chunks are in memory on this side: the ones being sent and the one being prepared. done returns a buffer
// set for reuse; the channel closes after the last chunk or the first error.
func prepareChunks(ctx context.Context, f *os.File, it *Item, enc *encoder, d *digests, chunkSize, buffers int, raw, stored int64) (<-chan prepared, func(prepared)) {
	out := make(chan prepared, 1)
	free := make(chan prepared, buffers)
	for range buffers {
		free <- prepared{raw: make([]byte, chunkSize)}
	}
	go func() {
		defer close(out)
		for first := true; raw < it.Size || (first && enc != nil && it.Size == 0); first = false {
			var b prepared
			select {
			case b = <-free:
			case <-ctx.Done():
				return
			}
			n := min(int64(len(b.raw)), it.Size-raw)
			chunk := b.raw[:n]
			if _, err := f.ReadAt(chunk, raw); err != nil {
				out <- prepared{err: permanentf("read %s at %d: %w (it had %d bytes when it was found finished)", f.Name(), raw, err, it.Size)}
				return
			}
			b.out = chunk
			if enc != nil {
				b.zbuf = enc.encodeInto(chunk, b.zbuf[:0])
				b.out = b.zbuf
			}
			d.add(chunk, b.out)
			raw, stored = raw+n, stored+int64(len(b.out))
			p, err := d.progress(raw, stored, "")
			if err != nil {
				out <- prepared{err: err}
				return
			}
			b.p, b.raw = p, b.raw[:cap(b.raw)]
			select {
			case out <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, func(b prepared) {
		select {
		case free <- b:
		default:
		}
	}
}
