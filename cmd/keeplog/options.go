package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/driver"
)

// Options are keeplog's command-line flags.
type Options struct {
	Endpoint        string
	NodeID          string
	Root            string
	Kubeconfig      string
	DriverName      string
	RegistrationDir string
	KubeletEndpoint string
	HTTPAddress     string
	// MetricsAuth is how /metrics is guarded: auto, kubernetes or none (http.go).
	MetricsAuth      string
	ShutdownGrace    time.Duration
	KeepEnvValues    bool
	PodLogsDir       string
	DescribeInterval time.Duration
	// StdoutGrace keeps the stdout/stderr of selected pods without a keeplog volume past their deletion (grace.go).
	StdoutGrace bool
	// Namespace holds keeplog's Leases (upload and dump semaphores, the GC leader); POD_NAMESPACE by default.
	Namespace string
	// LogFormat is "text" (klog) or "json".
	LogFormat string

	Archive ArchiveOptions // options_archive.go
	GC      GCOptions      // options_gc.go
	Usage   UsageOptions   // options_usage.go
	Dump    DumpOptions    // options_dump.go
	// Retrieval is the read endpoint for retained pod directories (options_retrieval.go).
	Retrieval RetrievalOptions
}

// AddFlags registers the flags on fs with their defaults.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Endpoint, "endpoint", "unix:///csi/csi.sock", "CSI endpoint: a unix socket (unix:///path)")
	fs.StringVar(&o.NodeID, "node-id", "", "this node's name (required; usually the NODE_NAME from the downward API)")
	fs.StringVar(&o.Root, "root", "/var/log/keeplog", "directory on the node that holds every pod directory")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig for the Kubernetes API; in-cluster configuration when empty")
	fs.StringVar(&o.DriverName, "driver-name", api.DriverName, "CSI driver name")
	fs.StringVar(&o.RegistrationDir, "kubelet-registration-dir", "", "kubelet's plugin registry directory (e.g. /var/lib/kubelet/plugins_registry); empty: do not register with kubelet")
	fs.StringVar(&o.KubeletEndpoint, "kubelet-endpoint", "", "the CSI socket path as kubelet sees it on the host; defaults to the --endpoint path")
	fs.StringVar(&o.HTTPAddress, "http-address", ":9808", "address for /healthz and /metrics; empty disables")
	fs.StringVar(&o.MetricsAuth, "metrics-auth", metricsAuthAuto, "how /metrics is guarded: kubernetes (a bearer token checked with a TokenReview and a SubjectAccessReview for get on the non-resource URL /metrics; needs create on tokenreviews and subjectaccessreviews), none, or auto: kubernetes unless --http-address is a loopback address. /healthz is never guarded (kubelet's probe)")
	fs.DurationVar(&o.ShutdownGrace, "shutdown-grace", 10*time.Second, "how long in-flight calls may finish at shutdown")
	fs.BoolVar(&o.KeepEnvValues, "keep-env-values", false, "write literal container env values into pod.yaml (by default they are redacted: they may hold secrets)")
	fs.StringVar(&o.PodLogsDir, "pod-logs-dir", "/var/log/pods", "kubelet's container log directory, whose stdout/stderr files keeplog copies into each pod's directory")
	fs.DurationVar(&o.DescribeInterval, "describe-interval", 30*time.Second, "how often running pods' stdout/stderr is copied and missing pod metadata retried")
	fs.BoolVar(&o.StdoutGrace, "stdout-grace", false, "hard-link the stdout/stderr files kubelet makes for pods annotated (or in a namespace labelled) keeplog.csi.io/stdout-grace=true into <root>/.pods, so they outlive the pod for --retain-for (needs the API; no keeplog volume needed)")
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "kube-system"
	}
	fs.StringVar(&o.Namespace, "namespace", ns, "namespace of keeplog's Leases (cluster-wide semaphores, GC leader); defaults to $POD_NAMESPACE, else kube-system")
	fs.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	o.Archive.AddFlags(fs)
	o.GC.AddFlags(fs)
	o.Usage.AddFlags(fs)
	o.Dump.AddFlags(fs)
	o.Retrieval.AddFlags(fs)
}

// Validate checks the flags and says which is wrong.
func (o *Options) Validate() error {
	var errs []error
	if err := driver.ValidateNodeID(o.NodeID); err != nil {
		errs = append(errs, fmt.Errorf("--node-id: %w", err))
	}
	if _, err := driver.ParseEndpoint(o.Endpoint); err != nil {
		errs = append(errs, fmt.Errorf("--endpoint: %w", err))
	}
	if !filepath.IsAbs(o.Root) || filepath.Clean(o.Root) != o.Root || o.Root == "/" {
		errs = append(errs, fmt.Errorf("--root %q must be a clean absolute path other than /", o.Root))
	}
	if o.RegistrationDir != "" && !filepath.IsAbs(o.RegistrationDir) {
		errs = append(errs, fmt.Errorf("--kubelet-registration-dir %q must be absolute", o.RegistrationDir))
	}
	if o.KubeletEndpoint != "" && !filepath.IsAbs(o.KubeletEndpoint) {
		errs = append(errs, fmt.Errorf("--kubelet-endpoint %q must be an absolute socket path", o.KubeletEndpoint))
	}
	if o.DriverName == "" {
		errs = append(errs, errors.New("--driver-name must not be empty"))
	}
	if !filepath.IsAbs(o.PodLogsDir) {
		errs = append(errs, fmt.Errorf("--pod-logs-dir %q must be absolute", o.PodLogsDir))
	}
	if o.DescribeInterval <= 0 {
		errs = append(errs, fmt.Errorf("--describe-interval %s must be positive", o.DescribeInterval))
	}
	if o.ShutdownGrace < 0 {
		errs = append(errs, fmt.Errorf("--shutdown-grace %s must not be negative", o.ShutdownGrace))
	}
	if errs1 := validation.IsDNS1123Label(o.Namespace); len(errs1) > 0 {
		errs = append(errs, fmt.Errorf("--namespace %q: %s", o.Namespace, strings.Join(errs1, "; ")))
	}
	switch o.MetricsAuth {
	case metricsAuthAuto, metricsAuthKubernetes, metricsAuthNone:
	default:
		errs = append(errs, fmt.Errorf("--metrics-auth %q must be auto, kubernetes or none", o.MetricsAuth))
	}
	if o.Dump.Webhook && o.Dump.WebhookTokenFile == "" && !o.Dump.WebhookAllowUnauthenticated && !isLoopbackAddress(o.HTTPAddress) {
		errs = append(errs, fmt.Errorf("--dump-webhook without --dump-webhook-token-file on --http-address %q (not loopback): anyone who reaches it could request heap dumps; give a token file or --dump-webhook-allow-unauthenticated", o.HTTPAddress))
	}
	if o.LogFormat != "text" && o.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q must be text or json", o.LogFormat))
	}
	errs = append(errs, o.Archive.Validate(), o.GC.Validate(), o.Usage.Validate(), o.Dump.Validate(), o.Retrieval.Validate())
	return errors.Join(errs...)
}
