package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
)

// cmdDescribe prints what keeplog knows of the pod: its record, pod.txt and ended.txt, and its files.
func cmdDescribe(ctx context.Context, args []string, st streams) error {
	var g globalFlags
	fs := newFlags("describe", &g)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("describe takes one pod")
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	p, err := c.resolve(ctx, c.namespace, fs.Arg(0))
	if err != nil {
		return err
	}
	s := p.Status
	tw := tabwriter.NewWriter(st.out, 0, 8, 1, ' ', 0)
	_, _ = fmt.Fprintf(tw, "Name:\t%s\nNamespace:\t%s\nUID:\t%s\nNode:\t%s\nVolume:\t%s\nDirectory:\t%s\nFirst published:\t%s\n",
		s.PodName, p.Namespace, s.PodUID, s.Node, s.Volume, s.Directory, s.FirstPublished.UTC())
	if s.UnpublishedAt != nil {
		_, _ = fmt.Fprintf(tw, "Ended:\t%s\n", s.UnpublishedAt.UTC())
	} else {
		_, _ = fmt.Fprintf(tw, "Ended:\t<running>\n")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range []struct{ title, rel string }{{"Pod", podText}, {"End state", endedText}} {
		text, err := c.readSmall(ctx, p, f.rel)
		if err != nil {
			return err
		}
		if text == "" {
			text = "<not written>\n"
		}
		_, _ = fmt.Fprintf(st.out, "\n%s (%s):\n%s", f.title, f.rel, indent(text))
	}
	fl, err := c.files(ctx, p)
	if err != nil {
		return err
	}
	_, _ = fmt.Fprintf(st.out, "\nFiles:\n")
	tw = tabwriter.NewWriter(st.out, 0, 8, 2, ' ', tabwriter.AlignRight)
	for _, f := range fl.Files {
		_, _ = fmt.Fprintf(tw, "  %d\t  %s\t\n", f.Size, f.Path)
	}
	for path, kind := range fl.Skipped {
		_, _ = fmt.Fprintf(tw, "  %s\t  %s (never read)\t\n", kind, path)
	}
	return tw.Flush()
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ") + "\n"
}
