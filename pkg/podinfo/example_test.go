package podinfo_test

import (
	"context"
	"errors"
	"log"
	"time"

	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/pkg/podinfo"
)

// How the node plugin uses the package: at NodePublish after the pod directory exists and before (or right after)
// the bind mount, and at NodeUnpublish before the unmount returns. Nothing here may fail a publish.
func Example() {
	var client podinfo.API // keeplog's kube.Clients; nil when keeplog runs without API access
	w := podinfo.NewWriter(podinfo.Options{Owners: podinfo.APIOwnerLookup(client)})
	fetcher := &podinfo.Fetcher{Client: client, Timeout: podinfo.DefaultFetchTimeout}
	copier, _ := podinfo.NewLogCopier("", clock.RealClock{})
	ctx := context.Background()
	volumeContext := map[string]string{}
	podDir := "/var/log/keeplog/shop_web-7d9f8-abcde_0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"

	// NodePublishVolume.
	pc, ok, err := podinfo.PodContextFromVolumeContext(volumeContext)
	if err != nil || !ok {
		return // the driver refused it already (InvalidArgument) or it is a fallback directory: nothing to describe
	}
	pod, err := fetcher.Fetch(ctx, pc.Pod)
	switch {
	case err == nil:
		if _, err := w.EnsureContainerDirs(podDir, pod); err != nil {
			log.Print(err) // per container; the others are made
		}
		if err := w.WritePodMetadata(ctx, podDir, pod); err != nil {
			log.Print(err)
		}
	case errors.Is(err, podinfo.ErrTimeout) || errors.Is(err, podinfo.ErrAPI):
		_ = w.WriteMinimal(podDir, pc)
		go func() { /* retry fetcher.Fetch with backoff, then EnsureContainerDirs + WritePodMetadata */ }()
	default: // ErrUIDMismatch, ErrPodNotFound: the pod of this publish is gone; kubelet will unpublish
		_ = w.WriteMinimal(podDir, pc)
	}

	// NodeUnpublishVolume: copy stdout first. Also call copier.Copy periodically and when a container terminates:
	// kubelet may remove a deleted pod's containers, and their logs, before it unmounts the volumes.
	if _, err := copier.Copy(ctx, podDir, pc.Pod); err != nil {
		log.Print(err)
	}
	now := time.Now()
	if pod, err := fetcher.Fetch(ctx, pc.Pod); err == nil {
		_ = w.WriteEndState(podDir, pod, now)
	} else {
		_ = w.WriteEndStateUnavailable(podDir, pc.Pod, now, err)
	}
}
