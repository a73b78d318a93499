package archiver

import (
	"encoding/binary"
	"io"
)

// Dumps hold secrets, so every file keeplog creates on the archive server (temporary names, archived files,
// manifests) must be created readable by its owner only. github.com/pkg/sftp sends SSH_FXP_OPEN without attributes,
// so OpenSSH creates files 0666 less its umask (usually 0644), and a chmod afterwards leaves a window in which any
// user of the server can open the file and keep reading it once the dump is written. createModeWriter sits between
// pkg/sftp and the SSH channel and gives every SSH_FXP_OPEN that creates a file the permissions attribute, so the
// server's open(2) creates it with that mode (its umask can only take bits away).
//
// Every other packet passes through unchanged and, when pkg/sftp writes it whole (it writes each packet's header
// and payload in one Write each), without being copied or split: the upload's hot path stays as it was.

const (
	fxpOpen          = 3    // SSH_FXP_OPEN
	fxfCreat         = 0x08 // SSH_FXF_CREAT
	fxAttrPerms      = 0x04 // SSH_FILEXFER_ATTR_PERMISSIONS
	maxOpenPacketLen = 64 << 10
	// remoteFileMode is the mode of every file keeplog creates on the archive server.
	remoteFileMode = 0o600
)

// createModeWriter rewrites the SFTP request stream; see the comment above. Not safe for concurrent writes, which
// pkg/sftp serialises.
type createModeWriter struct {
	w    io.WriteCloser
	mode uint32
	buf  []byte // the start of a packet not yet forwarded: its first 5 bytes, or a whole SSH_FXP_OPEN
	pass int    // bytes of the current packet still to forward unchanged
}

func newCreateModeWriter(w io.WriteCloser, mode uint32) *createModeWriter {
	return &createModeWriter{w: w, mode: mode}
}

func (c *createModeWriter) Close() error { return c.w.Close() }

func (c *createModeWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		var err error
		switch {
		case c.pass > 0:
			k := min(c.pass, len(p))
			_, err = c.w.Write(p[:k])
			c.pass -= k
			p = p[k:]
		case len(c.buf) == 0 && len(p) >= 5 && p[4] != fxpOpen:
			// A whole header at hand, not an open: forward it with as much of its packet as this Write has.
			c.pass = 4 + int(binary.BigEndian.Uint32(p))
		default:
			p, err = c.buffer(p)
		}
		if err != nil {
			return total - len(p), err
		}
	}
	return total, nil
}

// buffer collects a packet start that arrived split, or a whole SSH_FXP_OPEN, and forwards it once complete.
func (c *createModeWriter) buffer(p []byte) ([]byte, error) {
	need := 5
	if len(c.buf) >= 5 {
		need = 4 + int(binary.BigEndian.Uint32(c.buf))
	}
	k := min(need-len(c.buf), len(p))
	c.buf = append(c.buf, p[:k]...)
	p = p[k:]
	if len(c.buf) < need {
		return p, nil
	}
	length := 4 + int(binary.BigEndian.Uint32(c.buf))
	if need == 5 && c.buf[4] == fxpOpen && length <= maxOpenPacketLen {
		return p, nil // now collect the whole open request
	}
	out := c.buf
	if c.buf[4] == fxpOpen && len(c.buf) == length {
		out = withCreateMode(c.buf, c.mode)
	}
	c.pass = length - len(c.buf)
	c.buf = c.buf[:0]
	_, err := c.w.Write(out)
	return p, err
}

// withCreateMode returns an SSH_FXP_OPEN packet (length, type, id, path, pflags, attrs) that creates a file, sent
// without attributes, with the permissions attribute set to mode; any other packet is returned as it is.
func withCreateMode(pkt []byte, mode uint32) []byte {
	if len(pkt) < 13 {
		return pkt
	}
	pathEnd := 13 + int(binary.BigEndian.Uint32(pkt[9:13]))
	if pathEnd < 13 || len(pkt) != pathEnd+8 {
		return pkt // not the attribute-less form pkg/sftp sends
	}
	pflags := binary.BigEndian.Uint32(pkt[pathEnd:])
	attrFlags := binary.BigEndian.Uint32(pkt[pathEnd+4:])
	if pflags&fxfCreat == 0 || attrFlags != 0 {
		return pkt
	}
	out := make([]byte, 0, len(pkt)+4)
	out = binary.BigEndian.AppendUint32(out, uint32(len(pkt)+4-4))
	out = append(out, pkt[4:pathEnd+4]...)
	out = binary.BigEndian.AppendUint32(out, fxAttrPerms)
	return binary.BigEndian.AppendUint32(out, mode)
}
