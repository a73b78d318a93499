package archiver

import "fmt"

// encoder compresses one chunk into an independent frame.
type encoder struct{}

func (e *encoder) encode(raw []byte) []byte { return raw }

// newEncoder returns the encoder for an item's Compression ("" = none: nil).
func newEncoder(spec string) (*encoder, error) {
	if spec == "" {
		return nil, nil
	}
	return nil, fmt.Errorf("compression %q: not supported", spec)
}

// describeCompression splits an item's Compression into the manifest's fields.
func describeCompression(spec string) (string, int) {
	return "none", 0
}
