package framework

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// PreviousRelease is the commit the upgrade e2e installs first: the main branch before record formats and
// authenticated /metrics (issue 18), whose records carry no "format" and whose chart has no monitoring values.
// Move it forward at each release: it should be the release before the current one.
const PreviousRelease = "467f8b7b6c84ff2d040a5ab287eb599d59c02758"

// PreviousImageRef is the reference the previous release's image is imported as.
const PreviousImageRef = "keeplog.local/e2e/keeplog:previous"

// Release is a built keeplog release: its chart and its image archive.
type Release struct {
	Chart, Image, Ref string
	worktree          string
	repo              string
}

// BuildPreviousRelease checks out commit into a temporary git worktree under dir, runs `make build` there and
// writes its binary as an image with this checkout's image writer (hack/image) on the base `make image` made
// (bin/image/rootfs-GOARCH): the same base, the old binary and the old chart. The image writer wants a keeplog-api
// binary too: the previous release's when it built one, else this checkout's (a release before keeplog-api never
// runs it: its chart has no Deployment of it). Remove the worktree with Remove.
func BuildPreviousRelease(ctx context.Context, repo, commit, dir string, logf func(string, ...any)) (*Release, error) {
	wt := filepath.Join(dir, "previous")
	if out, err := run(ctx, repo, "git", "worktree", "add", "--detach", wt, commit); err != nil {
		return nil, fmt.Errorf("git worktree add %s %s (a shallow clone lacks it: fetch the history): %w\n%s", wt, commit, err, out)
	}
	r := &Release{Chart: filepath.Join(wt, "charts", "keeplog"), Ref: PreviousImageRef, worktree: wt, repo: repo}
	logf("building the previous release %s in %s", commit[:12], wt)
	if out, err := run(ctx, wt, "make", "build", "VERSION=previous-"+commit[:7]); err != nil {
		return r, fmt.Errorf("make build of %s: %w\n%s", commit[:12], err, out)
	}
	rootfs := filepath.Join(repo, "bin", "image", "rootfs-"+runtime.GOARCH)
	if _, err := os.Stat(rootfs); err != nil {
		return r, fmt.Errorf("no image base %s (make image makes it): %w", rootfs, err)
	}
	api := filepath.Join(wt, "bin", "keeplog-api")
	if _, err := os.Stat(api); err != nil {
		api = filepath.Join(repo, "bin", "keeplog-api")
	}
	out := filepath.Join(dir, "previous-image")
	if o, err := run(ctx, repo, "go", "run", "./hack/image", "write", "-out", out, "-ref", PreviousImageRef,
		"-version", "previous", "-platform", "linux/"+runtime.GOARCH+"="+filepath.Join(wt, "bin", "keeplog")+","+rootfs+","+api); err != nil {
		return r, fmt.Errorf("image of the previous release: %w\n%s", err, o)
	}
	r.Image = filepath.Join(out, "keeplog-linux-"+runtime.GOARCH+".tar")
	return r, nil
}

// Remove deletes the temporary worktree (and git's record of it).
func (r *Release) Remove(ctx context.Context) error {
	if r == nil || r.worktree == "" {
		return nil
	}
	if out, err := run(ctx, r.repo, "git", "worktree", "remove", "--force", r.worktree); err != nil {
		return fmt.Errorf("git worktree remove %s: %w\n%s", r.worktree, err, out)
	}
	return nil
}

func run(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	b, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(b)), err
}
