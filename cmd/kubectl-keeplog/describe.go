package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keeplog/keeplog/pkg/retrievalapi"
)

// cmdDescribe prints what keeplog knows of the pod: its record, pod.txt and ended.txt, and its files.
func cmdDescribe(ctx context.Context, args []string, st streams) error {
	var g globalFlags
	fs := newFlags("describe", &g)
	c, p, err := onePod(ctx, "describe", fs, &g, args)
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
	_, _ = fmt.Fprintf(tw, "Expires:\t%s\n", expiresLine(s))
	_, _ = fmt.Fprintf(tw, "Archive:\t%s\n", archiveColumn(s.Archive))
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := describeArchive(ctx, c, p, st); err != nil {
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

// expiresLine is the retention's end as a time and how far it is.
func expiresLine(s retrievalapi.RetainedPodStatus) string {
	if s.ExpiresAt == nil {
		return "<none> (retention starts when the pod ends)"
	}
	return fmt.Sprintf("%s (%s)", s.ExpiresAt.UTC(), expiresColumn(s, time.Now()))
}

// describeArchive lists the archiver's status of each matching file and where its archived copy is.
func describeArchive(ctx context.Context, c *client, p *retrievalapi.RetainedPod, st streams) error {
	files, err := archivedFiles(ctx, c, p)
	if err != nil || len(files) == 0 {
		return err
	}
	_, _ = fmt.Fprintf(st.out, "\nArchived copies (%s):\n", archiveStatusFile)
	tw := tabwriter.NewWriter(st.out, 0, 8, 2, ' ', 0)
	for _, f := range files {
		where := orNone(f.Remote)
		if f.SameAs != "" {
			where = "same content as " + f.SameAs
		}
		if f.Error != "" {
			where += " (" + f.Error + ")"
		}
		_, _ = fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Path, f.State, where)
	}
	return tw.Flush()
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ") + "\n"
}
