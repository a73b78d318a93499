package dump

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// APIExecer runs commands in containers through the API server's pods/exec subresource, over WebSocket with the
// v5.channel.k8s.io (or v4) subprotocol. It needs only the standard library and client-go's authenticated transport
// (client-go's tools/remotecommand would add three modules to go.mod). Needs RBAC: create on pods/exec.
type APIExecer struct {
	host string
	rt   http.RoundTripper
}

// Exec subprotocols, preferred first. Both frame each message as one channel byte and the data.
const (
	execProtocolV5 = "v5.channel.k8s.io"
	execProtocolV4 = "v4.channel.k8s.io"
)

// Exec channels.
const (
	chanStdout = 1
	chanStderr = 2
	chanError  = 3
)

// maxExecOutput bounds the output kept from a command.
const maxExecOutput = 64 << 10

// maxFrame bounds one WebSocket frame from the server.
const maxFrame = 16 << 20

// NewAPIExecer uses cfg's server and credentials, over HTTP/1.1 (WebSocket upgrades do not exist in HTTP/2).
func NewAPIExecer(cfg *rest.Config) (*APIExecer, error) {
	c := rest.CopyConfig(cfg)
	c.TLSClientConfig.NextProtos = []string{"http/1.1"}
	rt, err := rest.TransportFor(c)
	if err != nil {
		return nil, fmt.Errorf("exec transport for %s: %w", cfg.Host, err)
	}
	return &APIExecer{host: cfg.Host, rt: rt}, nil
}

// Exec runs command in the container and returns its stdout and stderr (at most 64 KiB). A non-zero exit is an
// error that says the code.
func (e *APIExecer) Exec(ctx context.Context, namespace, pod, container string, command []string) (string, error) {
	u, err := url.Parse(e.host)
	if err != nil {
		return "", fmt.Errorf("API server %q: %w", e.host, err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v1/namespaces/" + url.PathEscape(namespace) + "/pods/" + url.PathEscape(pod) + "/exec"
	q := url.Values{"container": {container}, "stdout": {"true"}, "stderr": {"true"}}
	for _, c := range command {
		q.Add("command", c)
	}
	u.RawQuery = q.Encode()
	switch u.Scheme { // the transport speaks http(s); the upgrade is in the headers
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	var keyBytes [16]byte
	_, _ = rand.Read(keyBytes[:])
	key := base64.StdEncoding.EncodeToString(keyBytes[:])
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", key)
	req.Header.Set("Sec-WebSocket-Protocol", execProtocolV5+", "+execProtocolV4)
	what := fmt.Sprintf("exec in %s/%s container %s", namespace, pod, container)
	resp, err := e.rt.RoundTrip(req)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var st metav1.Status
		if json.Unmarshal(body, &st) == nil && st.Message != "" {
			return "", fmt.Errorf("%s: %s: %s", what, resp.Status, st.Message)
		}
		return "", fmt.Errorf("%s: %s: %q", what, resp.Status, body)
	}
	conn, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return "", fmt.Errorf("%s: the upgraded connection is not writable", what)
	}
	defer conn.Close()
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), acceptKey(key); got != want {
		return "", fmt.Errorf("%s: bad Sec-WebSocket-Accept %q", what, got)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	out, status, err := readExecStream(bufio.NewReader(conn), conn)
	if ctx.Err() != nil {
		return out, fmt.Errorf("%s: %w", what, context.Cause(ctx))
	}
	if err != nil {
		return out, fmt.Errorf("%s: %w", what, err)
	}
	if status == nil {
		return out, fmt.Errorf("%s: the stream ended without an exit status", what)
	}
	if status.Status != metav1.StatusSuccess {
		code := ""
		if status.Details != nil {
			for _, c := range status.Details.Causes {
				if c.Type == "ExitCode" {
					code = c.Message
				}
			}
		}
		if code != "" {
			return out, fmt.Errorf("%s: the command exited with code %s", what, code)
		}
		return out, fmt.Errorf("%s: %s", what, status.Message)
	}
	_ = writeFrame(conn, 0x8, []byte{0x03, 0xe8}) // close, normal
	return out, nil
}

// acceptKey is RFC 6455's Sec-WebSocket-Accept for key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// readExecStream reads messages until the server closes: stdout and stderr go to the output, the error channel's
// Status is returned. Pings are answered on w.
func readExecStream(r *bufio.Reader, w io.Writer) (string, *metav1.Status, error) {
	var out strings.Builder
	var status *metav1.Status
	var msg []byte
	for {
		fin, op, payload, err := readFrame(r)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "closed") {
				return out.String(), status, nil
			}
			return out.String(), status, err
		}
		switch op {
		case 0x8: // close
			return out.String(), status, nil
		case 0x9: // ping
			if err := writeFrame(w, 0xA, payload); err != nil {
				return out.String(), status, err
			}
			continue
		case 0xA: // pong
			continue
		case 0x0, 0x1, 0x2:
			msg = append(msg, payload...)
		default:
			return out.String(), status, fmt.Errorf("unexpected WebSocket opcode %d", op)
		}
		if !fin {
			continue
		}
		if len(msg) > 0 {
			ch, data := msg[0], msg[1:]
			switch ch {
			case chanStdout, chanStderr:
				if room := maxExecOutput - out.Len(); room > 0 {
					out.Write(data[:min(len(data), room)])
				}
			case chanError:
				if len(data) > 0 {
					status = &metav1.Status{}
					if err := json.Unmarshal(data, status); err != nil {
						return out.String(), nil, fmt.Errorf("exec status %q: %w", data, err)
					}
				}
			}
		}
		msg = msg[:0]
	}
}

// readFrame reads one WebSocket frame (RFC 6455 5.2).
func readFrame(r *bufio.Reader) (fin bool, op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return false, 0, nil, err
	}
	fin, op = h[0]&0x80 != 0, h[0]&0x0f
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return false, 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return false, 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > maxFrame {
		return false, 0, nil, fmt.Errorf("WebSocket frame of %d bytes (at most %d)", n, maxFrame)
	}
	var mask [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err = io.ReadFull(r, mask[:]); err != nil {
			return false, 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(r, payload); err != nil {
		return false, 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return fin, op, payload, nil
}

// writeFrame writes one final, masked (as a client must) frame of at most 125 bytes: control frames only.
func writeFrame(w io.Writer, op byte, payload []byte) error {
	if len(payload) > 125 {
		return fmt.Errorf("control frame of %d bytes", len(payload))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	frame := []byte{0x80 | op, 0x80 | byte(len(payload))}
	frame = append(frame, mask[:]...)
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	_, err := w.Write(frame)
	return err
}
