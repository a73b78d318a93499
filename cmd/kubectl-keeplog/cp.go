package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"

	"github.com/keeplog/keeplog/pkg/retrievalapi"
)

type rpod = retrievalapi.RetainedPod

// cmdCp copies one file of a retained pod to a local path: streamed into <local>.part, resumed from its size with
// Range and If-Range (the ETag kept in <local>.part.etag) after an interruption, renamed when complete; the
// sha256 of the file is printed.
func cmdCp(ctx context.Context, args []string, st streams) error {
	var g globalFlags
	fs := newFlags("cp", &g)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageError("cp takes <pod>:<path> <local>")
	}
	pod, rel, ok := strings.Cut(fs.Arg(0), ":")
	if !ok || pod == "" || rel == "" {
		return usageError(fmt.Sprintf("%q: want <pod>:<path>", fs.Arg(0)))
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	p, err := c.resolve(ctx, c.namespace, pod)
	if err != nil {
		return err
	}
	sum, n, err := download(ctx, c, p, strings.TrimPrefix(rel, "/"), fs.Arg(1))
	if err != nil {
		return err
	}
	_, _ = fmt.Fprintf(st.out, "%s  %s (%d bytes)\n", sum, fs.Arg(1), n)
	return nil
}

// download fetches rel into local (through local.part) and returns its sha256 and size.
func download(ctx context.Context, c *client, p *rpod, rel, local string) (string, int64, error) {
	part, tagFile := local+".part", local+".part.etag"
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return "", 0, err
	}
	h := http.Header{}
	if tag, err := os.ReadFile(tagFile); err == nil && have > 0 {
		h.Set("Range", fmt.Sprintf("bytes=%d-", have))
		h.Set("If-Range", string(tag))
	}
	resp, err := c.open(ctx, p, rel, h)
	var ae *apiError
	if errors.As(err, &ae) && ae.code == http.StatusRequestedRangeNotSatisfiable {
		h.Del("Range") // the part is not shorter than the file: fetch it again whole
		resp, err = c.open(ctx, p, rel, h)
	}
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent { // the whole file (new, or changed since the part)
		if err := f.Truncate(0); err != nil {
			return "", 0, err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return "", 0, err
		}
	}
	if tag := resp.Header.Get("ETag"); tag != "" {
		if err := os.WriteFile(tagFile, []byte(tag), 0o600); err != nil {
			return "", 0, err
		}
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		return "", 0, fmt.Errorf("download interrupted (run the same command again to resume): %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, err
	}
	sh := sha256.New()
	n, err := io.Copy(sh, f)
	if err != nil {
		return "", 0, err
	}
	if err := f.Close(); err != nil {
		return "", 0, err
	}
	if err := os.Rename(part, local); err != nil {
		return "", 0, err
	}
	if err := os.Remove(tagFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", 0, err // the file is complete; a stale tag would only make a later cp of it resume wrongly
	}
	return hex.EncodeToString(sh.Sum(nil)), n, nil
}
