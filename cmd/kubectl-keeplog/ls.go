package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/duration"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/keeplog/keeplog/pkg/retrievalapi"
)

func clientcmdContext(ns string) clientcmdapi.Context { return clientcmdapi.Context{Namespace: ns} }

// newFlags is a verb's flag set with the global flags.
func newFlags(verb string, g *globalFlags) *pflag.FlagSet {
	fs := pflag.NewFlagSet("kubectl keeplog "+verb, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.add(fs)
	return fs
}

func parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	return nil
}

// cmdLs lists retained pods.
func cmdLs(ctx context.Context, args []string, st streams) error {
	var g globalFlags
	var all bool
	var owner, reason, node, output string
	fs := newFlags("ls", &g)
	fs.BoolVarP(&all, "all-namespaces", "A", false, "every namespace you may read pod logs in")
	fs.StringVar(&owner, "owner", "", "only pods owned by this controller (kind/name: deploy/x, sts/x, job/x, rs/x)")
	fs.StringVar(&reason, "reason", "", "only pods whose container ended with this reason (OOMKilled, Error, ...)")
	fs.StringVar(&node, "node", "", "only pods on this node")
	fs.StringVarP(&output, "output", "o", "", "output format: wide, json or yaml")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("ls takes no arguments")
	}
	switch output {
	case "", "wide", "json", "yaml":
	default:
		return usageError(fmt.Sprintf("--output %q: want wide, json or yaml", output))
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	l, err := c.list(ctx, c.namespace, all)
	if err != nil {
		return err
	}
	want := l.Items[:0]
	var facts []podFacts
	for _, p := range l.Items {
		if node != "" && p.Status.Node != node {
			continue
		}
		f := podFacts{}
		if owner != "" || reason != "" || output == "wide" {
			if f, err = readFacts(ctx, c, &p); err != nil {
				return err
			}
		}
		if (owner != "" && !f.ownedBy(owner)) || (reason != "" && !f.endedWith(reason)) {
			continue
		}
		if output == "wide" {
			if f.size, err = podSize(ctx, c, &p); err != nil {
				return err
			}
		}
		want = append(want, p)
		facts = append(facts, f)
	}
	l.Items = want
	for _, n := range l.Unreachable {
		_, _ = fmt.Fprintf(st.err, "warning: node %s did not answer: its retained pods are not listed\n", n)
	}
	return printList(st, l, facts, output, all)
}

func printList(s streams, l *retrievalapi.RetainedPodList, facts []podFacts, output string, all bool) error {
	out := s.out
	switch output {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "    ")
		return enc.Encode(l)
	case "yaml":
		b, err := yaml.Marshal(l)
		if err != nil {
			return err
		}
		_, err = out.Write(b)
		return err
	}
	if len(l.Items) == 0 {
		_, _ = fmt.Fprintln(s.err, "No retained pods found.")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
	cols := []string{"NAME", "NODE", "STATE", "ENDED", "ARCHIVE", "EXPIRES", "AGE"}
	if all {
		cols = append([]string{"NAMESPACE"}, cols...)
	}
	if output == "wide" {
		cols = append(cols, "SIZE", "OWNER", "REASON", "UID")
	}
	_, _ = fmt.Fprintln(tw, strings.Join(cols, "\t"))
	now := time.Now()
	for i, p := range l.Items {
		state, ended := "Running", "<none>"
		if p.Status.UnpublishedAt != nil {
			state, ended = "Retained", duration.HumanDuration(now.Sub(p.Status.UnpublishedAt.Time))+" ago"
		}
		row := []string{p.Status.PodName, p.Status.Node, state, ended, archiveColumn(p.Status.Archive),
			expiresColumn(p.Status, now), duration.HumanDuration(now.Sub(p.Status.FirstPublished.Time))}
		if all {
			row = append([]string{p.Namespace}, row...)
		}
		if output == "wide" {
			row = append(row, humanSize(facts[i].size), orNone(facts[i].owner()), orNone(strings.Join(facts[i].reasons, ",")), p.Status.PodUID)
		}
		_, _ = fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
