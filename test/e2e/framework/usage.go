package framework

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/rest"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// RestartKeeplogWithRoot stops the node plugin (SIGTERM) and starts it again on another --root, with extra flags.
// PodDir follows the new root.
func (e *Env) RestartKeeplogWithRoot(ctx context.Context, root string, extra ...string) error {
	if !e.keeplog.Exited() {
		if err := e.keeplog.Signal(syscall.SIGTERM); err != nil {
			return err
		}
		<-e.keeplog.Done()
	}
	e.Root = root
	return e.StartKeeplog(ctx, extra...)
}

// PodEvents lists the Events about one pod (by name; pass the UID to tell recreated pods apart).
func (e *Env) PodEvents(ctx context.Context, ns, name string) ([]corev1.Event, error) {
	list, err := e.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.kind": "Pod", "involvedObject.name": name}.AsSelector().String()})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// Exec runs a shell script in the pod's first container and returns its stdout; the error carries its stderr.
func (e *Env) Exec(ctx context.Context, ns, pod, script string) (string, error) {
	return e.Lab.Kubectl(ctx, "exec", "-n", ns, pod, "--", "sh", "-c", script)
}

// KubeletVolumeStats reads a pod volume's stats from kubelet's summary API (/stats/summary); nil when kubelet has
// none for it (yet). The API server's node proxy (kubectl get --raw /api/v1/nodes/<node>/proxy/stats/summary)
// refuses the lab's kubelet, which listens on 127.0.0.1 ("address not allowed"), so this asks kubelet directly at
// the port the Node object names, with the admin token (kubelet checks it by webhook) and the lab's CA.
func (e *Env) KubeletVolumeStats(ctx context.Context, ns, pod, volume string) (*statsv1alpha1.VolumeStats, error) {
	node, err := e.Client.CoreV1().Nodes().Get(ctx, e.Lab.NodeName(), metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	cfg := e.Lab.RESTConfig()
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/stats/summary", node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: rt, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("kubelet summary: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("kubelet summary %s: %s %v: %s", url, resp.Status, err, raw)
	}
	var s statsv1alpha1.Summary
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("decode kubelet summary: %w", err)
	}
	for _, p := range s.Pods {
		if p.PodRef.Namespace != ns || p.PodRef.Name != pod {
			continue
		}
		for i := range p.VolumeStats {
			if p.VolumeStats[i].Name == volume {
				return &p.VolumeStats[i], nil
			}
		}
	}
	return nil, nil
}
