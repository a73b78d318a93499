// Command keeplog is the keeplog CSI driver: flags → Options → wiring → run until SIGTERM/SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/mount-utils"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/liveness"
	"github.com/keeplog/keeplog/pkg/archiver"
	"github.com/keeplog/keeplog/pkg/driver"
	"github.com/keeplog/keeplog/pkg/gc"
	"github.com/keeplog/keeplog/pkg/kube"
	"github.com/keeplog/keeplog/pkg/podinfo"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
	"github.com/keeplog/keeplog/pkg/usage"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// `keeplog check`: the chart's helm test (check.go), the same image as the plugin.
	if len(os.Args) > 1 && os.Args[1] == "check" {
		if err := runCheck(context.Background(), os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "keeplog check: %v\n", err)
			os.Exit(1)
		}
		return
	}
	opts := &Options{}
	fs := flag.NewFlagSet("keeplog", flag.ContinueOnError)
	klog.InitFlags(fs)
	opts.AddFlags(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println("keeplog", version)
		return
	}
	if err := opts.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "keeplog: invalid flags:\n%v\n", err)
		os.Exit(2)
	}
	if err := setupLogging(opts.LogFormat, fs, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "keeplog: %v\n", err)
		os.Exit(2)
	}
	applyGCPercent(os.LookupEnv, debug.SetGCPercent)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, opts); err != nil {
		klog.ErrorS(err, "keeplog stopped with an error")
		klog.FlushAndExit(klog.ExitFlushTimeout, 1)
	}
	klog.InfoS("keeplog stopped")
	klog.Flush()
}

// components are what run builds and starts. Each optional part (archive.go, gc.go, usage.go) builds itself from
// them and adds its runner and driver dependencies.
type components struct {
	opts    *Options
	store   *store.Store
	kube    *kube.Clients // nil without API access (its clients are nil then)
	restCfg *rest.Config  // the API client configuration; nil without API access
	reg     *prometheus.Registry
	live    *liveness.Registry // every long-running loop records its progress here; /healthz fails when one stalls
	events  *kube.Events       // nil without API access: no Events
	pods    *kube.NodePods     // nil without API access
	policy  *policy.Resolver
	// archivePolicies is c.policy as the archiver and the dump trigger ask for it (cached, malformed annotations
	// reported once).
	archivePolicies *policy.ArchivePolicies
	archiver        *archiver.Archiver // nil without --archive-target
	gc              *gc.GC
	usage           *usage.Tracker
	deps            driver.Deps
	runners         []runner
	// handlers are served on --http-address beside /healthz and /metrics, by path (dump.go's webhook).
	handlers map[string]http.Handler
}

// podAPI is c.kube as podinfo's API: without API access a nil interface, not an interface holding a nil *kube.Clients.
func (c *components) podAPI() podinfo.API {
	if c.kube == nil {
		return nil
	}
	return c.kube
}

// runner is one long-running part; it returns when ctx ends (nil) or it cannot go on (an error stops keeplog).
type runner struct {
	name string
	run  func(ctx context.Context) error
}

func (c *components) add(name string, run func(ctx context.Context) error) {
	c.runners = append(c.runners, runner{name: name, run: run})
}

func run(ctx context.Context, o *Options) error {
	klog.InfoS("Starting keeplog", "version", version, "driver", o.DriverName, "node", o.NodeID, "root", o.Root)
	st, err := store.Open(o.Root, clock.RealClock{})
	if err != nil {
		return err
	}
	c := &components{opts: o, store: st, reg: prometheus.NewRegistry()}
	c.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if c.live, err = liveness.New(nil, c.reg); err != nil {
		return err
	}
	c.restCfg, c.kube, err = kubeClient(o.Kubeconfig)
	if err != nil {
		c.restCfg, c.kube = nil, nil
		klog.InfoS("No Kubernetes API access: running with reduced metadata (pod information from kubelet only)", "reason", err)
	}
	var live policy.LiveAnnotations
	if c.kube != nil {
		c.events = kube.NewEvents(c.kube, "keeplog", o.NodeID, klog.Background())
		defer c.events.Shutdown()
		c.pods = kube.NewNodePods(c.kube.Pods(""), o.NodeID, 10*time.Minute)
		live = c.pods.Annotations
		c.add("pod informer", func(ctx context.Context) error { c.pods.Run(ctx); return nil })
	}
	c.policy = policy.NewResolver(st, live, o.GC.policyDefaults())
	c.archivePolicies = policy.NewArchivePolicies(c.policy, policy.ArchiveDeps{Events: c.events, Log: klog.Background()})
	if c.pods != nil {
		if err := c.pods.OnChange(func(p *corev1.Pod) {
			ref := store.PodRef{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID)}
			if err := c.policy.Observe(ref, p.Annotations); err != nil {
				klog.ErrorS(err, "Could not record the pod's keeplog annotations", "pod", ref.String())
			}
		}); err != nil {
			return fmt.Errorf("watch pods: %w", err)
		}
	}

	describer, err := podinfo.NewDescriber(podinfo.DescriberConfig{Log: klog.Background(), Node: o.NodeID, KeepEnvValues: o.KeepEnvValues,
		LogSourceRoot: o.PodLogsDir, Interval: o.DescribeInterval}, c.podAPI())
	if err != nil {
		return err
	}
	c.add("describer", func(ctx context.Context) error { describer.Run(ctx); return nil })
	if c.pods != nil {
		// A container that ended has its stdout/stderr copied at once, not at the next --describe-interval.
		if err := c.pods.OnChange(describer.ContainersChanged); err != nil {
			return fmt.Errorf("watch pods: %w", err)
		}
	}
	c.deps = driver.Deps{Log: klog.Background(), Store: st, Mounter: mount.New(""), Metrics: c.reg, Describer: describer}
	for _, part := range []func(*components) error{setupArchiver, setupUsage, setupGC, setupDump, setupGrace, setupRetrieval} {
		if err := part(c); err != nil {
			return err
		}
	}

	drv, err := driver.New(driver.Config{Name: o.DriverName, Version: version, NodeID: o.NodeID}, c.deps)
	if err != nil {
		return err
	}
	if err := drv.Reconcile(); err != nil {
		return err
	}
	socket, _ := driver.ParseEndpoint(o.Endpoint) // checked by Validate
	l, err := driver.Listen(socket)
	if err != nil {
		return err
	}
	klog.InfoS("Serving CSI", "socket", socket)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return drv.Serve(ctx, l, o.ShutdownGrace) })
	for _, r := range c.runners {
		g.Go(func() error {
			if err := r.run(ctx); err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			return nil
		})
	}
	if o.RegistrationDir != "" {
		kubeletEndpoint := o.KubeletEndpoint
		if kubeletEndpoint == "" {
			kubeletEndpoint = socket
		}
		g.Go(func() error { return drv.ServeRegistration(ctx, o.RegistrationDir, kubeletEndpoint) })
	}
	if o.HTTPAddress != "" {
		metrics, err := c.metricsHandler()
		if err != nil {
			return err
		}
		g.Go(func() error { return serveHTTP(ctx, o.HTTPAddress, drv, c.live, metrics, c.handlers) })
	}
	return g.Wait()
}

// kubeClient connects to the API server: the kubeconfig when given, else the in-cluster configuration.
func kubeClient(kubeconfig string) (*rest.Config, *kube.Clients, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, nil, err
	}
	cfg.UserAgent = "keeplog/" + version
	klog.InfoS("Kubernetes API configured", "host", cfg.Host)
	client, err := kube.NewClients(cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, client, nil
}
