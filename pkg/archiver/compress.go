package archiver

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Compression is opt-in per pod directory (Policy.Compression). Each chunk of the file becomes one independent
// zstd frame (zstd.Encoder.EncodeAll), so an upload resumes at any chunk boundary with a fresh encoder and the
// remote file is the frames one after another — one valid zstd stream that `zstd -d` restores. Memory is bounded
// by the chunk: one raw chunk, one compressed chunk and the encoder's tables; nothing is written to a temporary
// file.

// zstdSuffix is added to the remote name of a compressed file.
const zstdSuffix = ".zst"

// DefaultZstdLevel is the level of "zstd" without one (zstd's own default).
const DefaultZstdLevel = 3

// encoder compresses one chunk into an independent frame.
type encoder struct {
	z *zstd.Encoder
}

// encodeInto compresses raw as one frame appended to dst (the caller owns the result, so two chunks can be in
// flight: one being sent while the next is compressed).
func (e *encoder) encodeInto(raw, dst []byte) []byte { return e.z.EncodeAll(raw, dst) }

// compressionSpec is an item's Compression for a policy's: "" (none) or "zstd:<level>".
func compressionSpec(algo string, level int) string {
	if algo == "" || algo == "none" {
		return ""
	}
	if level == 0 {
		level = DefaultZstdLevel
	}
	return fmt.Sprintf("%s:%d", algo, level)
}

// newEncoder returns the encoder for an item's Compression ("" = none: nil). zstd levels 1-22 map to the
// library's four speeds: 1-2 fastest, 3-5 default, 6-9 better, 10-22 best.
func newEncoder(spec string) (*encoder, error) {
	if spec == "" {
		return nil, nil
	}
	algo, level := describeCompression(spec)
	if algo != "zstd" || level < 1 || level > 22 {
		return nil, fmt.Errorf("compression %q: want zstd:<level 1-22>", spec)
	}
	z, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true))
	if err != nil {
		return nil, fmt.Errorf("compression %q: %w", spec, err)
	}
	return &encoder{z: z}, nil
}

// describeCompression splits an item's Compression into the manifest's fields ("none", 0 when raw).
func describeCompression(spec string) (string, int) {
	if spec == "" {
		return "none", 0
	}
	algo, lv, _ := strings.Cut(spec, ":")
	level, err := strconv.Atoi(lv)
	if err != nil {
		level = -1
	}
	return algo, level
}
