#!/usr/bin/env bash
# Build golangci-lint from the Go module proxy once, outside the checkout, and print the path of the binary:
#
#   $KEEPLOG_CACHE/bin/golangci-lint-$GOLANGCI_LINT_VERSION/golangci-lint
#
# `go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION` through
# hack/go-install-cached.sh (a few minutes cold on 2 cores). All log output goes to stderr, so
# `LINT=$(hack/golangci-lint.sh)` works.
set -euo pipefail

GOLANGCI_LINT_VERSION="${GOLANGCI_LINT_VERSION:-v2.15.0}"
exec "$(dirname "$0")/go-install-cached.sh" golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint "${GOLANGCI_LINT_VERSION}"
