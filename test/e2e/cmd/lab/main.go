// Command lab runs the keeplog e2e lab (a single-node Kubernetes v1.34 on this machine) by hand.
//
//	go run ./test/e2e/cmd/lab up [-workdir DIR] [-node NAME]   # runs until Ctrl-C / SIGTERM, then stops the lab
//	go run ./test/e2e/cmd/lab down -workdir DIR                # cleans up after an `up` that was killed
//
// Run as root, after hack/install-deps.sh and hack/build-k8s.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/keeplog/keeplog/test/e2e/lab"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

func usage() error {
	return fmt.Errorf("usage: lab up [-workdir DIR] [-node NAME] | lab down -workdir DIR")
}

func run(args []string) error {
	if len(args) == 0 {
		return usage()
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	workDir := fs.String("workdir", "", "lab work dir (up: default a new temp dir)")
	node := fs.String("node", "", "node name (default the hostname)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "up":
		return up(*workDir, *node)
	case "down":
		if *workDir == "" {
			return fmt.Errorf("down: -workdir is required")
		}
		return lab.Cleanup(*workDir)
	default:
		return usage()
	}
}

func up(workDir, node string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := lab.Start(ctx, lab.Config{WorkDir: workDir, NodeName: node, Logf: log.Printf})
	if err != nil {
		return err
	}
	fmt.Printf("\nlab is up (node %s). In another shell:\n  export KUBECONFIG=%s\n  %s/kubectl get nodes\nlogs: %s\nCtrl-C stops it.\n\n",
		l.NodeName(), l.Kubeconfig(), lab.DefaultBinDir(), l.LogDir())
	<-ctx.Done()
	log.Printf("stopping the lab")
	return l.Stop()
}
