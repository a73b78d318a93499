package archiver

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	"golang.org/x/time/rate"
)

// Progress is the acknowledged contiguous prefix of an upload under way, journalled (fsynced) after every chunk
// the server acknowledged whole. It carries the sha256 states of what was read and what was stored so far
// (crypto/sha256's digest is an encoding.BinaryMarshaler), so a resumed upload neither re-reads the local prefix
// nor re-sends it: at most the chunks in flight at the interruption (writeDepth) are sent twice.
type Progress struct {
	// Raw is the number of bytes of the local file that the acknowledged chunks hold.
	Raw int64 `json:"rawBytes"`
	// Stored is the number of bytes the server acknowledged, contiguous from 0 (Raw when uncompressed).
	Stored int64 `json:"storedBytes"`
	// RawHash and StoredHash are the marshalled sha256 states after Raw and Stored bytes.
	RawHash    []byte `json:"rawHashState"`
	StoredHash []byte `json:"storedHashState"`
	// Tail is the sha256 of the last TailLen stored bytes: Resume reads them back to see that the server's
	// temporary file still holds what was sent.
	Tail    []byte `json:"tailSha256"`
	TailLen int64  `json:"tailLen"`
	// Token is the Remote's own state of the upload (see Prefix.Token).
	Token string `json:"token,omitempty"`
}

// tailMax is how much of the prefix's end Resume reads back to check it.
const tailMax = 64 << 10

// prefix is what the Remote is told the server should hold.
func (p *Progress) prefix() Prefix {
	if p == nil {
		return Prefix{}
	}
	return Prefix{Size: p.Stored, Tail: p.Tail, TailLen: p.TailLen, Token: p.Token}
}

// digests are an upload's running sha256 of the local file and of the stored bytes, and the end of the stored
// bytes for the tail check. Uncompressed, the stored bytes are the file's: one sha256 serves both (stored is nil),
// since hashing every byte twice was a third of an upload's CPU.
type digests struct {
	raw, stored hash.Hash
	tail        []byte
}

// newDigests starts from p's states (nil: from the start); compressed says whether the stored bytes differ from
// the file's.
func newDigests(p *Progress, compressed bool) (*digests, error) {
	d := &digests{raw: sha256.New()}
	if compressed {
		d.stored = sha256.New()
	}
	if p == nil || p.Stored == 0 {
		return d, nil
	}
	if err := d.raw.(encoding.BinaryUnmarshaler).UnmarshalBinary(p.RawHash); err != nil {
		return nil, fmt.Errorf("journalled sha256 state of the file: %w", err)
	}
	if d.stored == nil {
		return d, nil
	}
	if err := d.stored.(encoding.BinaryUnmarshaler).UnmarshalBinary(p.StoredHash); err != nil {
		return nil, fmt.Errorf("journalled sha256 state of the stored bytes: %w", err)
	}
	return d, nil
}

// add accounts one acknowledged chunk.
func (d *digests) add(raw, stored []byte) {
	d.raw.Write(raw)
	if d.stored != nil {
		d.stored.Write(stored)
	}
	if len(stored) >= tailMax {
		d.tail = append(d.tail[:0], stored[len(stored)-tailMax:]...)
		return
	}
	d.tail = append(d.tail, stored...)
	if len(d.tail) > tailMax {
		d.tail = append(d.tail[:0], d.tail[len(d.tail)-tailMax:]...)
	}
}

// sums are the hex sha256 of the file and of the stored bytes so far.
func (d *digests) sums() (raw, stored string) {
	raw = hex.EncodeToString(d.raw.Sum(nil))
	if d.stored == nil {
		return raw, raw
	}
	return raw, hex.EncodeToString(d.stored.Sum(nil))
}

// progress records the state after raw and stored bytes.
func (d *digests) progress(raw, stored int64, token string) (*Progress, error) {
	rh, err := d.raw.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, err
	}
	sh := rh // uncompressed: the stored bytes' state is the file's
	if d.stored != nil {
		if sh, err = d.stored.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
			return nil, err
		}
	}
	tail := sha256.Sum256(d.tail)
	return &Progress{Raw: raw, Stored: stored, RawHash: rh, StoredHash: sh, Tail: tail[:], TailLen: int64(len(d.tail)),
		Token: token}, nil
}

// throttled hands out b at most at the node's bandwidth limit: the limit applies to bytes on the wire (after
// compression). It counts what it hands out and ends with the context.
type throttled struct {
	ctx     context.Context
	limiter *rate.Limiter
	b       []byte
	onBytes func(int)
}

func (r *throttled) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, context.Cause(r.ctx)
	}
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.b))
	if r.limiter != nil {
		n = min(n, r.limiter.Burst())
		if err := r.limiter.WaitN(r.ctx, n); err != nil {
			if r.ctx.Err() != nil {
				return 0, context.Cause(r.ctx)
			}
			return 0, err
		}
	}
	copy(p, r.b[:n])
	r.b = r.b[n:]
	if r.onBytes != nil {
		r.onBytes(n)
	}
	return n, nil
}

// unlimited returns the bytes r still holds when r is a throttled reader without a limit: an Upload may then send
// them as they are, without reading them into a buffer of its own, and count what it sent with sent.
func unlimited(r io.Reader) ([]byte, bool) {
	t, ok := r.(*throttled)
	if !ok || t.limiter != nil || t.ctx.Err() != nil {
		return nil, false
	}
	return t.b, true
}

// sent accounts n bytes sent directly from r.b (see unlimited).
func (r *throttled) sent(n int) {
	n = min(max(n, 0), len(r.b))
	r.b = r.b[n:]
	if r.onBytes != nil {
		r.onBytes(n)
	}
}
