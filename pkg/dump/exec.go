package dump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/util/exec"
)

// APIExecer runs commands in containers through the API server's pods/exec subresource with client-go's
// remotecommand: WebSocket (v5.channel.k8s.io) first, SPDY when the server does not upgrade to WebSocket.
// Needs RBAC: create on pods/exec.
type APIExecer struct {
	cfg    *rest.Config
	client corev1client.CoreV1Interface
}

// maxExecOutput bounds the output kept from a command.
const maxExecOutput = 64 << 10

// NewAPIExecer uses cfg's server and credentials.
func NewAPIExecer(cfg *rest.Config) (*APIExecer, error) {
	c, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("exec client for %s: %w", cfg.Host, err)
	}
	return &APIExecer{cfg: rest.CopyConfig(cfg), client: c}, nil
}

// Exec runs command in the container and returns its stdout and stderr (at most 64 KiB). A non-zero exit is an
// error that says the code.
func (e *APIExecer) Exec(ctx context.Context, namespace, pod, container string, command []string) (string, error) {
	what := fmt.Sprintf("exec in %s/%s container %s", namespace, pod, container)
	req := e.client.RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: command, Stdout: true, Stderr: true},
			scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(e.cfg, "GET", req.URL().String())
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(e.cfg, "POST", req.URL())
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, httpstream.IsUpgradeFailure)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	out := &limitedBuffer{max: maxExecOutput}
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: out, Stderr: out})
	var exitErr exec.CodeExitError
	switch {
	case errors.As(err, &exitErr):
		return out.String(), fmt.Errorf("%s: the command exited with code %d", what, exitErr.ExitStatus())
	case err != nil:
		return out.String(), fmt.Errorf("%s: %w", what, err)
	}
	return out.String(), nil
}

// limitedBuffer keeps the first max bytes written to it (stdout and stderr may be written concurrently).
type limitedBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
