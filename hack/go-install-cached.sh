#!/usr/bin/env bash
# Build a Go command from the Go module proxy (no download site, no package manager) once, outside the checkout,
# and print the path of the binary:
#
#   hack/go-install-cached.sh NAME PACKAGE VERSION [LDFLAGS-COMMAND]
#   → $KEEPLOG_CACHE/bin/NAME-VERSION/<last element of PACKAGE>
#
# `go install -trimpath -ldflags "-s -w ..." PACKAGE@VERSION` with CGO off, at nice 10 and $BUILD_PARALLELISM
# compile jobs. LDFLAGS-COMMAND, if given, is run (through bash, only when a build is needed) and what it prints is
# added to the ldflags (helm.sh stamps Helm's version and its Kubernetes version that way). The binary must answer
# `version`. Idempotent; concurrent invocations (and build-k8s.sh) serialise on $KEEPLOG_CACHE/build.lock, and a
# half-built directory is never used (.complete marks a finished one). All log output goes to stderr, so
# `BIN=$(hack/go-install-cached.sh ...)` works. Used by helm.sh and golangci-lint.sh.
set -euo pipefail

[[ $# -eq 3 || $# -eq 4 ]] || { echo "usage: $0 NAME PACKAGE VERSION [LDFLAGS-COMMAND]" >&2; exit 2; }
NAME="$1" PKG="$2" VERSION="$3" LDFLAGS_CMD="${4:-}"
KEEPLOG_CACHE="${KEEPLOG_CACHE:-${HOME}/.cache/keeplog}"
BUILD_PARALLELISM="${BUILD_PARALLELISM:-2}"
DIR="${KEEPLOG_CACHE}/bin/${NAME}-${VERSION}"
BIN="${PKG##*/}"

log() { printf '[%s %s] %s\n' "${NAME}" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
have() { [[ -f "${DIR}/.complete" && -x "${DIR}/${BIN}" ]]; }
done_() { printf '%s\n' "${DIR}/${BIN}"; exit 0; }

have && done_
command -v go >/dev/null || die "go is not on PATH"
mkdir -p "${KEEPLOG_CACHE}"
exec 9>"${KEEPLOG_CACHE}/build.lock"
if ! flock -n 9; then
	log "another build is running; waiting for ${KEEPLOG_CACHE}/build.lock"
	flock 9
fi
have && done_
tmp="${DIR}.tmp.$$"
rm -rf "${tmp}"
mkdir -p "${tmp}"
trap 'rm -rf "${tmp}"' EXIT
ldflags="-s -w"
if [[ -n "${LDFLAGS_CMD}" ]]; then
	extra="$(bash -c "${LDFLAGS_CMD}")" || die "${LDFLAGS_CMD} failed"
	ldflags+=" ${extra}"
fi
log "go install ${PKG}@${VERSION} (a few minutes the first time)"
start=${SECONDS}
(
	cd /
	export CGO_ENABLED=0 GOBIN="${tmp}" GOFLAGS="-buildvcs=false -p=${BUILD_PARALLELISM}"
	nice -n 10 go install -trimpath -ldflags "${ldflags}" "${PKG}@${VERSION}"
) >&2 || die "go install ${PKG}@${VERSION} failed"
"${tmp}/${BIN}" version >&2 || die "the built ${BIN} does not run"
touch "${tmp}/.complete"
rm -rf "${DIR}"
mv "${tmp}" "${DIR}"
trap - EXIT
log "built in $((SECONDS - start))s: ${DIR}/${BIN}"
done_
