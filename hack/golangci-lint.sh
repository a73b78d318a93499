#!/usr/bin/env bash
# Build golangci-lint from the Go module proxy once, outside the checkout, and print the path of the binary:
#
#   $KEEPLOG_CACHE/bin/golangci-lint-$GOLANGCI_LINT_VERSION/golangci-lint
#
# `go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION` (a few minutes cold on
# 2 cores), cached like helm (hack/helm.sh) and serialised on the same lock. All log output goes to stderr, so
# `LINT=$(hack/golangci-lint.sh)` works.
set -euo pipefail

GOLANGCI_LINT_VERSION="${GOLANGCI_LINT_VERSION:-v2.15.0}"
KEEPLOG_CACHE="${KEEPLOG_CACHE:-${HOME}/.cache/keeplog}"
BUILD_PARALLELISM="${BUILD_PARALLELISM:-2}"
DIR="${KEEPLOG_CACHE}/bin/golangci-lint-${GOLANGCI_LINT_VERSION}"

log() { printf '[golangci-lint %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
have() { [[ -f "${DIR}/.complete" && -x "${DIR}/golangci-lint" ]]; }

if have; then
	printf '%s\n' "${DIR}/golangci-lint"
	exit 0
fi
command -v go >/dev/null || die "go is not on PATH"
mkdir -p "${KEEPLOG_CACHE}"
exec 9>"${KEEPLOG_CACHE}/build.lock"
if ! flock -n 9; then
	log "another build is running; waiting for ${KEEPLOG_CACHE}/build.lock"
	flock 9
fi
if have; then
	printf '%s\n' "${DIR}/golangci-lint"
	exit 0
fi
tmp="${DIR}.tmp.$$"
rm -rf "${tmp}"
mkdir -p "${tmp}"
trap 'rm -rf "${tmp}"' EXIT
log "go install golangci-lint@${GOLANGCI_LINT_VERSION} (a few minutes the first time)"
start=${SECONDS}
(
	cd /
	export CGO_ENABLED=0 GOBIN="${tmp}" GOFLAGS="-buildvcs=false -p=${BUILD_PARALLELISM}"
	nice -n 10 go install -trimpath -ldflags "-s -w" "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@${GOLANGCI_LINT_VERSION}"
) >&2 || die "go install golangci-lint@${GOLANGCI_LINT_VERSION} failed"
"${tmp}/golangci-lint" version >&2 || die "the built golangci-lint does not run"
touch "${tmp}/.complete"
rm -rf "${DIR}"
mv "${tmp}" "${DIR}"
trap - EXIT
log "built in $((SECONDS - start))s: ${DIR}/golangci-lint"
printf '%s\n' "${DIR}/golangci-lint"
