package podinfo

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/keeplog/keeplog/pkg/store"
)

// DefaultFetchTimeout bounds one pod read at publish.
const DefaultFetchTimeout = 2 * time.Second

// Kinds of fetch failure; match them with errors.Is(err, ErrPodNotFound) and so on.
var (
	// ErrPodNotFound: the API has no pod of that namespace and name.
	ErrPodNotFound = errors.New("pod not found")
	// ErrUIDMismatch: the pod of that name is another pod (deleted and recreated under the same name).
	ErrUIDMismatch = errors.New("pod uid does not match the publish context")
	// ErrTimeout: the API did not answer within the timeout.
	ErrTimeout = errors.New("pod read timed out")
	// ErrAPI: any other failure of the read (unreachable, forbidden, ...).
	ErrAPI = errors.New("pod read failed")
)

// FetchError is the error of Fetch: Kind is one of the Err* values above, Err the cause.
type FetchError struct {
	Pod  store.PodRef
	Kind error
	Err  error
}

func (e *FetchError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("read pod %s: %v", e.Pod, e.Kind)
	}
	return fmt.Sprintf("read pod %s: %v: %v", e.Pod, e.Kind, e.Err)
}

// Is matches the kind.
func (e *FetchError) Is(target error) bool { return target == e.Kind }

// Unwrap returns the cause.
func (e *FetchError) Unwrap() error { return e.Err }

// Fetcher reads a pod from the API with a bounded wait.
type Fetcher struct {
	Client  API
	Timeout time.Duration // <= 0: DefaultFetchTimeout
}

// Fetch reads pod ref.Namespace/ref.Name and checks its UID is ref.UID. It returns within Timeout (or ctx's deadline,
// whichever is first) even if the client does not honour its context; the abandoned read finishes in the background.
// Errors are *FetchError of kind ErrPodNotFound, ErrUIDMismatch, ErrTimeout or ErrAPI: none of them should stop a
// publish; mount, write WriteMinimal, and complete with WritePodMetadata when a later Fetch succeeds (not for
// ErrUIDMismatch/ErrPodNotFound at publish: the pod of the publish is gone, nothing will complete it).
func (f *Fetcher) Fetch(ctx context.Context, ref store.PodRef) (*corev1.Pod, error) {
	if f == nil || f.Client == nil {
		return nil, &FetchError{Pod: ref, Kind: ErrAPI, Err: errors.New("no Kubernetes client configured")}
	}
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		pod *corev1.Pod
		err error
	}
	done := make(chan result, 1) // buffered: an abandoned read does not block forever
	go func() {
		pod, err := f.Client.GetPod(ctx, ref.Namespace, ref.Name)
		done <- result{pod, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		return nil, &FetchError{Pod: ref, Kind: ErrTimeout, Err: fmt.Errorf("no answer within %v: %w", timeout, ctx.Err())}
	}
	switch {
	case r.err == nil:
	case apierrors.IsNotFound(r.err):
		return nil, &FetchError{Pod: ref, Kind: ErrPodNotFound, Err: r.err}
	case errors.Is(r.err, context.DeadlineExceeded) || apierrors.IsTimeout(r.err) || apierrors.IsServerTimeout(r.err):
		return nil, &FetchError{Pod: ref, Kind: ErrTimeout, Err: r.err}
	default:
		return nil, &FetchError{Pod: ref, Kind: ErrAPI, Err: r.err}
	}
	if string(r.pod.UID) != ref.UID {
		return nil, &FetchError{Pod: ref, Kind: ErrUIDMismatch, Err: fmt.Errorf("the API's pod %s/%s has uid %s", r.pod.Namespace, r.pod.Name, r.pod.UID)}
	}
	return r.pod, nil
}
