package podinfo

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestFetcher(t *testing.T) {
	live := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: testRef.Namespace, Name: testRef.Name, UID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}}
	recreated := live.DeepCopy()
	recreated.UID = "99999999-4b5a-6978-8796-a5b4c3d2e1f0"
	for _, tc := range []struct {
		name     string
		objects  []runtime.Object
		reactor  k8stesting.ReactionFunc
		wantKind error // nil: success
		wantText string
	}{
		{"uid matches", []runtime.Object{live}, nil, nil, ""},
		{"recreated under the same name", []runtime.Object{recreated}, nil, ErrUIDMismatch, "99999999"},
		{"not found", nil, nil, ErrPodNotFound, "not found"},
		{"forbidden", []runtime.Object{live}, func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, testRef.Name, errors.New("no RBAC"))
		}, ErrAPI, "no RBAC"},
		{"server timeout", []runtime.Object{live}, func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewServerTimeout(schema.GroupResource{Resource: "pods"}, "get", 1)
		}, ErrTimeout, "get"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(tc.objects...)
			if tc.reactor != nil {
				client.PrependReactor("get", "pods", tc.reactor)
			}
			pod, err := (&Fetcher{Client: fakeAPI{client}}).Fetch(context.Background(), testRef)
			if tc.wantKind == nil {
				if err != nil || pod == nil || string(pod.UID) != testRef.UID {
					t.Fatalf("Fetch = %v, %v", pod, err)
				}
				return
			}
			var fe *FetchError
			if !errors.Is(err, tc.wantKind) || !errors.As(err, &fe) || pod != nil {
				t.Fatalf("Fetch = %v, %v; want kind %v", pod, err, tc.wantKind)
			}
			for _, other := range []error{ErrUIDMismatch, ErrPodNotFound, ErrTimeout, ErrAPI} {
				if other != tc.wantKind && errors.Is(err, other) {
					t.Errorf("%v also matches %v", err, other)
				}
			}
			if fe.Pod != testRef || !strings.Contains(err.Error(), tc.wantText) || !strings.Contains(err.Error(), testRef.Name) {
				t.Errorf("error %q lacks the pod or %q", err, tc.wantText)
			}
		})
	}
}

func TestFetcherTimeoutDoesNotWaitForAStuckClient(t *testing.T) {
	client := fake.NewClientset()
	release := make(chan struct{})
	defer close(release)
	client.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-release // ignores any context, as a hung connection might
		return true, nil, errors.New("too late")
	})
	f := &Fetcher{Client: fakeAPI{client}, Timeout: 50 * time.Millisecond}
	start := time.Now()
	_, err := f.Fetch(context.Background(), testRef)
	elapsed := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "50ms") {
		t.Errorf("err = %v, want a timeout naming 50ms", err)
	}
	if elapsed < 50*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("Fetch returned after %v with a 50ms timeout", elapsed)
	}
	// The caller's own deadline counts too.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	f.Timeout = time.Hour
	if _, err := f.Fetch(ctx, testRef); !errors.Is(err, ErrTimeout) {
		t.Errorf("caller deadline: err = %v", err)
	}
	if _, err := (&Fetcher{}).Fetch(context.Background(), testRef); !errors.Is(err, ErrAPI) {
		t.Errorf("no client: %v", err)
	}
}
