// Command keeplog is the keeplog CSI driver: flags → Options → wiring → run until SIGTERM/SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/mount-utils"

	"github.com/keeplog/keeplog/pkg/driver"
	"github.com/keeplog/keeplog/pkg/podinfo"
	"github.com/keeplog/keeplog/pkg/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
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
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, opts); err != nil {
		klog.ErrorS(err, "keeplog stopped with an error")
		klog.FlushAndExit(klog.ExitFlushTimeout, 1)
	}
	klog.InfoS("keeplog stopped")
	klog.Flush()
}

func run(ctx context.Context, o *Options) error {
	klog.InfoS("Starting keeplog", "version", version, "driver", o.DriverName, "node", o.NodeID, "root", o.Root)
	st, err := store.Open(o.Root, time.Now)
	if err != nil {
		return err
	}
	kube, err := kubeClient(o.Kubeconfig)
	if err != nil {
		klog.InfoS("No Kubernetes API access: running with reduced metadata (pod information from kubelet only)", "reason", err)
	}
	describer, err := podinfo.NewDescriber(podinfo.DescriberConfig{Node: o.NodeID, KeepEnvValues: o.KeepEnvValues,
		LogSourceRoot: o.PodLogsDir, Interval: o.DescribeInterval}, kube)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	drv, err := driver.New(driver.Config{Name: o.DriverName, Version: version, NodeID: o.NodeID},
		driver.Deps{Store: st, Mounter: mount.New(""), Metrics: reg, Describer: describer})
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
	g.Go(func() error { describer.Run(ctx); return nil })
	if o.RegistrationDir != "" {
		kubeletEndpoint := o.KubeletEndpoint
		if kubeletEndpoint == "" {
			kubeletEndpoint = socket
		}
		g.Go(func() error { return drv.ServeRegistration(ctx, o.RegistrationDir, kubeletEndpoint) })
	}
	if o.HTTPAddress != "" {
		g.Go(func() error { return serveHTTP(ctx, o.HTTPAddress, drv, reg) })
	}
	return g.Wait()
}

// kubeClient connects to the API server: the kubeconfig when given, else the in-cluster configuration.
func kubeClient(kubeconfig string) (kubernetes.Interface, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = "keeplog/" + version
	klog.InfoS("Kubernetes API configured", "host", cfg.Host)
	return kubernetes.NewForConfig(cfg)
}

// serveHTTP serves /healthz (the driver can read its root and records) and /metrics until ctx ends.
func serveHTTP(ctx context.Context, addr string, drv *driver.Driver, reg *prometheus.Registry) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := drv.Healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for health and metrics on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	klog.InfoS("Serving health and metrics", "address", l.Addr().String())
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("health and metrics server on %s: %w", addr, err)
	}
	return nil
}
