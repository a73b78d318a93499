package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keeplog/keeplog/pkg/api"
)

// serviceAccountTokenFile is where kubelet puts the pod's ServiceAccount token.
const serviceAccountTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// checkConfig is what `keeplog check` checks: every pod of the DaemonSet answers on its port.
type checkConfig struct {
	Namespace, DaemonSet string
	Port                 int
	WithToken            bool          // send the pod's ServiceAccount token to /metrics (--metrics-auth=kubernetes)
	Timeout              time.Duration // how long the plugins may take to be all ready and answering
}

// checkDeps are check's side effects: the API, the HTTP client and the token.
type checkDeps struct {
	DaemonSets daemonSets // of the check's namespace
	Pods       podLister  // of the check's namespace
	HTTP       *http.Client
	Token      func() (string, error)
	Out        io.Writer
}

type daemonSets interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*appsv1.DaemonSet, error)
}

type podLister interface {
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error)
}

// runCheck is `keeplog check`, the chart's `helm test`: it parses its own flags, connects in-cluster and checks.
func runCheck(ctx context.Context, args []string) error {
	var c checkConfig
	var kubeconfig string
	fs := flag.NewFlagSet("keeplog check", flag.ContinueOnError)
	fs.StringVar(&c.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "namespace of the DaemonSet")
	fs.StringVar(&c.DaemonSet, "daemonset", "keeplog", "name of keeplog's DaemonSet")
	fs.IntVar(&c.Port, "port", 9808, "the plugins' metrics port (metrics.port)")
	fs.BoolVar(&c.WithToken, "with-token", true, "send this pod's ServiceAccount token to /metrics")
	fs.DurationVar(&c.Timeout, "timeout", 2*time.Minute, "how long the plugins may take to be ready and answer")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig; in-cluster configuration when empty")
	if err := fs.Parse(args); err != nil {
		return err
	}
	_, kc, err := kubeClient(kubeconfig)
	if err != nil {
		return err
	}
	return checkPlugins(ctx, c, checkDeps{DaemonSets: kc.DaemonSets(c.Namespace), Pods: kc.Pods(c.Namespace),
		HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}},
		Token: func() (string, error) {
			b, err := os.ReadFile(serviceAccountTokenFile)
			return strings.TrimSpace(string(b)), err
		},
		Out: os.Stdout})
}

// checkPlugins polls until every node the DaemonSet should run on has a ready keeplog pod whose /healthz says ok
// and whose /metrics serves keeplog's metrics, or the timeout passes; the last failure is the error.
func checkPlugins(ctx context.Context, c checkConfig, d checkDeps) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 2*time.Second, c.Timeout, true, func(ctx context.Context) (bool, error) {
		last = checkOnce(ctx, c, d)
		return last == nil, nil
	})
	if err != nil && last != nil {
		return last
	}
	return err
}

func checkOnce(ctx context.Context, c checkConfig, d checkDeps) error {
	ds, err := d.DaemonSets.Get(ctx, c.DaemonSet, metav1.GetOptions{})
	if err != nil {
		return err
	}
	pods, err := d.Pods.List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(ds.Spec.Selector)})
	if err != nil {
		return err
	}
	if want := int(ds.Status.DesiredNumberScheduled); len(pods.Items) < want || want == 0 {
		return fmt.Errorf("DaemonSet %s/%s: %d pods, %d nodes should run one", c.Namespace, c.DaemonSet, len(pods.Items), want)
	}
	token := ""
	if c.WithToken {
		if token, err = d.Token(); err != nil {
			return fmt.Errorf("ServiceAccount token: %w", err)
		}
	}
	var errs []error
	for i := range pods.Items {
		p := &pods.Items[i]
		if err := checkPod(ctx, p, c.Port, token, d.HTTP); err != nil {
			errs = append(errs, fmt.Errorf("node %s, pod %s: %w", p.Spec.NodeName, p.Name, err))
			continue
		}
		if _, err := fmt.Fprintf(d.Out, "node %s: keeplog %s answers /healthz and /metrics on %s\n", p.Spec.NodeName, p.Name, p.Status.PodIP); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	return errors.Join(errs...)
}

// checkPod: the pod is ready, /healthz says ok, /metrics has keeplog's loop gauges.
func checkPod(ctx context.Context, p *corev1.Pod, port int, token string, hc *http.Client) error {
	ready := false
	for _, c := range p.Status.Conditions {
		ready = ready || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
	}
	if !ready || p.Status.PodIP == "" {
		return fmt.Errorf("not ready (phase %s)", p.Status.Phase)
	}
	base := "http://" + net.JoinHostPort(p.Status.PodIP, strconv.Itoa(port))
	if body, err := httpBody(ctx, hc, base+"/healthz", ""); err != nil || strings.TrimSpace(body) != "ok" {
		return fmt.Errorf("/healthz: %q %v", body, err)
	}
	body, err := httpBody(ctx, hc, base+"/metrics", token)
	if err != nil {
		return fmt.Errorf("/metrics: %w", err)
	}
	if !strings.Contains(body, api.MetricLoopLastProgressSeconds) {
		return errors.New("/metrics has no " + api.MetricLoopLastProgressSeconds)
	}
	return nil
}

// httpBody GETs url (with a bearer token when given) and fails unless the answer is 200.
func httpBody(ctx context.Context, hc *http.Client, url, token string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
	}
	return string(b), err
}
