// Command kubectl-keeplog is the kubectl plugin `kubectl keeplog` (docs/retrieval.md): it finds a dead pod's
// retained keeplog directory and fetches its files through the aggregated API retainedpods.keeplog.csi.io, with the
// user's own kubeconfig credentials; what it may see is what the user may see of pod logs.
//
//	kubectl keeplog ls [-n ns | -A] [--owner deploy/x] [--reason OOMKilled] [--node n] [-o wide|json|yaml]
//	kubectl keeplog logs <pod> [-c container] [--file gc.log] [-f]
//	kubectl keeplog cp <pod>:<path> <local>
//	kubectl keeplog describe <pod>
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `kubectl keeplog: a dead pod's files, within Kubernetes RBAC (you see what you may "kubectl logs").

  kubectl keeplog ls [-n ns | -A] [--owner deploy/x] [--reason OOMKilled] [--node n] [-o wide|json|yaml]
  kubectl keeplog logs <pod> [-c container] [--file gc.log] [-f]
  kubectl keeplog cp <pod>:<path> <local>      (resumes an interrupted download, prints the sha256)
  kubectl keeplog describe <pod>

<pod> is a pod name (the newest retained pod of that name) or <pod>.<uid>. Global flags: --kubeconfig, --context,
-n/--namespace.
`

// run is the plugin with its arguments and output; it returns the exit code (0 ok, 1 an error, 2 bad usage).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		_, _ = fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	verbs := map[string]func(context.Context, []string, streams) error{
		"ls": cmdLs, "list": cmdLs, "logs": cmdLogs, "cp": cmdCp, "describe": cmdDescribe,
	}
	verb, ok := verbs[args[0]]
	if !ok {
		_, _ = fmt.Fprintf(stderr, "error: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err := verb(ctx, args[1:], streams{out: stdout, err: stderr}); err != nil {
		if ue, ok := err.(usageError); ok {
			_, _ = fmt.Fprintf(stderr, "error: %s\n", string(ue))
			return 2
		}
		_, _ = fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	return 0
}

// usageError is a wrong invocation (exit code 2).
type usageError string

func (e usageError) Error() string { return string(e) }

// streams are a verb's outputs: results on out, warnings on err.
type streams struct{ out, err io.Writer }
