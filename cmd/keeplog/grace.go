package main

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/keeplog/keeplog/pkg/podinfo"
)

// graceLivenessBound: the grace's loop records progress after each poll (every 250 ms); one poll links the files
// of the selected pods, a few syscalls each. Before its first poll it waits for the pod informer's first list,
// which in a large cluster may take a while: five minutes covers both and still restarts a wedged plugin.
const graceLivenessBound = 5 * time.Minute

// setupGrace adds the stdout grace (--stdout-grace, pkg/podinfo Grace): kubelet's stdout/stderr files of selected
// pods hard-linked into <root>/.pods as they appear, kept for --retain-for after the pod left the node. It needs
// the node's pod informer, so nothing runs without API access.
func setupGrace(c *components) error {
	if !c.opts.StdoutGrace {
		return nil
	}
	if c.pods == nil {
		klog.InfoS("No Kubernetes API access: --stdout-grace does nothing (pods are selected by their annotations and namespace labels)")
		return nil
	}
	namespaces := c.kube.Namespaces()
	g, err := podinfo.NewGrace(podinfo.GraceConfig{Root: c.opts.Root, SourceRoot: c.opts.PodLogsDir,
		RetainFor: c.opts.GC.RetainFor, KeepEnvValues: c.opts.KeepEnvValues},
		podinfo.GraceDeps{Log: klog.Background(), Store: c.store, Pod: c.pods.Get, Synced: c.pods.WaitSynced,
			NamespaceLabels: func(ctx context.Context, name string) (map[string]string, error) {
				ns, err := namespaces.Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return nil, err
				}
				return ns.Labels, nil
			},
			Progress: c.live.Loop("grace", graceLivenessBound).Progress})
	if err != nil {
		return err
	}
	if err := c.pods.OnChange(g.PodChanged); err != nil {
		return err
	}
	c.add("stdout grace", func(ctx context.Context) error { g.Run(ctx); return nil })
	klog.InfoS("Stdout grace", "tree", c.opts.Root+"/.pods", "source", c.opts.PodLogsDir, "retainFor", c.opts.GC.RetainFor)
	return nil
}
