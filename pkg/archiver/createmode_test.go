package archiver

import (
	"bytes"
	"encoding/binary"
	"testing"
)

type bufCloser struct{ bytes.Buffer }

func (*bufCloser) Close() error { return nil }

// sftpPacket frames typ and body as an SFTP packet: length, type, body.
func sftpPacket(typ byte, body ...[]byte) []byte {
	b := bytes.Join(body, nil)
	out := binary.BigEndian.AppendUint32(nil, uint32(1+len(b)))
	return append(append(out, typ), b...)
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func sftpString(s string) []byte { return append(u32(uint32(len(s))), s...) }

// Only opens that create a file get the mode, however pkg/sftp's writes are split; everything else is unchanged.
func TestCreateModeWriterRewritesCreatingOpens(t *testing.T) {
	create := sftpPacket(fxpOpen, u32(7), sftpString("/upload/a.tmp"), u32(0x02|fxfCreat|0x10), u32(0))
	createWithMode := sftpPacket(fxpOpen, u32(7), sftpString("/upload/a.tmp"), u32(0x02|fxfCreat|0x10), u32(fxAttrPerms), u32(0o600))
	read := sftpPacket(fxpOpen, u32(8), sftpString("/upload/a"), u32(0x01), u32(0))
	write := sftpPacket(6, u32(9), sftpString("handle"), make([]byte, 8), sftpString(string(bytes.Repeat([]byte{3}, 300))))
	in := bytes.Join([][]byte{write, create, read, write}, nil)
	want := bytes.Join([][]byte{write, createWithMode, read, write}, nil)
	for chunk := 1; chunk <= len(in); chunk++ {
		var out bufCloser
		w := newCreateModeWriter(&out, 0o600)
		for p := in; len(p) > 0; {
			k := min(chunk, len(p))
			if n, err := w.Write(p[:k]); n != k || err != nil {
				t.Fatalf("chunk %d: Write = %d, %v", chunk, n, err)
			}
			p = p[k:]
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("chunks of %d bytes:\n got %x\nwant %x", chunk, out.Bytes(), want)
		}
	}
}
