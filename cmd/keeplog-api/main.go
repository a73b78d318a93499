// Command keeplog-api serves the aggregated API retainedpods.keeplog.csi.io/v1alpha1 (pkg/retrievalapi,
// docs/retrieval.md) behind the kube-apiserver aggregator: k8s.io/apiserver's delegated authentication (front-proxy
// request headers, checked against the requestheader client CA; bearer tokens with a TokenReview) and delegated
// authorization (SubjectAccessReview), then the node plugins' read endpoints with its own ServiceAccount token.
// It is a separate binary so that bin/keeplog, on every node, does not link k8s.io/apiserver.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	o := newOptions()
	fs := pflag.NewFlagSet("keeplog-api", pflag.ContinueOnError)
	o.AddFlags(fs)
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println("keeplog-api", version)
		return
	}
	if err := o.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "keeplog-api: invalid flags:\n%v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, o); err != nil {
		klog.ErrorS(err, "keeplog-api stopped with an error")
		klog.FlushAndExit(klog.ExitFlushTimeout, 1)
	}
	klog.Flush()
}
