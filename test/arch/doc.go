// Package arch holds tests of the package structure that no compiler checks: the feature packages (archiver, dump,
// gc, usage, podinfo) never import one another, so each can be read, tested and changed alone and cmd/keeplog is
// the one place they are joined; pkg/api, the names every package shares, imports nothing of keeplog.
package arch
