package dump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/util/exec"
)

// APIExecer runs commands in containers through the API server's pods/exec subresource with client-go's
// remotecommand: WebSocket (v5.channel.k8s.io) first, SPDY when the server does not upgrade to WebSocket.
// Needs RBAC: create on pods/exec.
type APIExecer struct {
	cfg  *rest.Config
	urls ExecURLs
}

// ExecURLs makes the URL of a pods/exec request (kube.Clients).
type ExecURLs interface {
	PodExecURL(namespace, pod string, opts *corev1.PodExecOptions) *url.URL
}

// maxExecOutput bounds the output kept from a command.
const maxExecOutput = 64 << 10

// NewAPIExecer dials the URLs urls makes with cfg's credentials.
func NewAPIExecer(cfg *rest.Config, urls ExecURLs) (*APIExecer, error) {
	if cfg == nil || urls == nil {
		return nil, errors.New("exec needs the Kubernetes API")
	}
	return &APIExecer{cfg: rest.CopyConfig(cfg), urls: urls}, nil
}

// Exec runs command in the container and returns its stdout and stderr (at most 64 KiB). A non-zero exit is an
// error that says the code.
func (e *APIExecer) Exec(ctx context.Context, namespace, pod, container string, command []string) (string, error) {
	what := fmt.Sprintf("exec in %s/%s container %s", namespace, pod, container)
	u := e.urls.PodExecURL(namespace, pod, &corev1.PodExecOptions{Container: container, Command: command, Stdout: true, Stderr: true})
	ws, err := remotecommand.NewWebSocketExecutor(e.cfg, "GET", u.String())
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(e.cfg, "POST", u)
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
