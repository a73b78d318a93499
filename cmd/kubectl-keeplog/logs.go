package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/keeplog/keeplog/pkg/retrieval/wire"
)

// cmdLogs prints a container's stdout/stderr copy (CRI lines, their message only, as kubectl logs), or with --file
// a file the container wrote; -f keeps printing what is appended.
func cmdLogs(ctx context.Context, args []string, st streams) error {
	var g globalFlags
	var container, file string
	var follow bool
	fs := newFlags("logs", &g)
	fs.StringVarP(&container, "container", "c", "", "the container (default: the only one, or the first)")
	fs.StringVar(&file, "file", "", "a file the container wrote (e.g. gc.log) instead of its stdout/stderr")
	fs.BoolVarP(&follow, "follow", "f", false, "keep printing what is appended (a running pod)")
	c, p, err := onePod(ctx, "logs", fs, &g, args)
	if err != nil {
		return err
	}
	fl, err := c.files(ctx, p)
	if err != nil {
		return err
	}
	rel, err := pickLog(fl.Files, container, file)
	if err != nil {
		return err
	}
	cri := file == ""
	var off int64
	for {
		n, err := printFrom(ctx, c, p, rel, off, cri, st.out)
		off += n
		if follow && ctx.Err() != nil {
			return nil // interrupted while following: the end the user asked for
		}
		if err != nil || !follow {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}

// pickLog chooses the file: with --file, the one of that name (under the container's directory first); else the
// container's newest stdout copy (.keeplog/logs/<container>/<restart>.log).
func pickLog(files []wire.File, container, file string) (string, error) {
	if file != "" {
		var match []string
		for _, f := range files {
			if f.Path == file || strings.HasSuffix(f.Path, "/"+file) {
				if !strings.HasPrefix(f.Path, metaDir) {
					match = append(match, f.Path)
				}
			}
		}
		sort.Slice(match, func(i, j int) bool {
			ci, cj := container != "" && strings.HasPrefix(match[i], container+"/"), container != "" && strings.HasPrefix(match[j], container+"/")
			return ci && !cj || (ci == cj && match[i] < match[j])
		})
		if len(match) == 0 {
			return "", fmt.Errorf("no file %q in the pod's directory", file)
		}
		return match[0], nil
	}
	best, bestN := "", -1
	for _, f := range files {
		rest, ok := strings.CutPrefix(f.Path, stdoutDir)
		if !ok {
			continue
		}
		c, name := path.Split(rest)
		c = strings.TrimSuffix(c, "/")
		n, err := strconv.Atoi(strings.TrimSuffix(name, ".log"))
		if err != nil || !strings.HasSuffix(name, ".log") || strings.Contains(c, "/") {
			continue
		}
		if container == "" {
			container = c
		}
		if c == container && n > bestN {
			best, bestN = f.Path, n
		}
	}
	if best == "" {
		return "", fmt.Errorf("no stdout/stderr copy for container %q", container)
	}
	return best, nil
}

// printFrom prints the file from off on and returns how many bytes it read.
func printFrom(ctx context.Context, c *client, p *rpod, rel string, off int64, cri bool, out io.Writer) (int64, error) {
	h := http.Header{}
	if off > 0 {
		h.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := c.open(ctx, p, rel, h)
	if ae, ok := err.(*apiError); ok && ae.code == http.StatusRequestedRangeNotSatisfiable {
		return 0, nil // nothing new
	}
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if off > 0 && resp.StatusCode != http.StatusPartialContent {
		return 0, fmt.Errorf("%s changed: start again", rel)
	}
	cr := &countingReader{r: resp.Body}
	if !cri {
		_, err = io.Copy(out, cr)
		return cr.n, err
	}
	sc := bufio.NewScanner(cr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		_, _ = fmt.Fprintln(out, criMessage(sc.Text()))
	}
	return cr.n, sc.Err()
}

// criMessage is a CRI log line's message: "<time> <stream> <P|F> <message>".
func criMessage(line string) string {
	parts := strings.SplitN(line, " ", 4)
	if len(parts) == 4 && (parts[1] == "stdout" || parts[1] == "stderr") {
		return parts[3]
	}
	return line
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
