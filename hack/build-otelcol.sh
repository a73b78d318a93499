#!/usr/bin/env bash
# Build the OpenTelemetry Collector the collector e2e tests run (test/e2e/otelcol: the filelog receiver and the
# file exporter), from the Go module proxy only.
#
# test/e2e/otelcol is its own scratch module (its go.mod pins otelcol v0.165.0 / contrib v0.165.1, every collector
# module at one release), so keeplog's go.mod does not grow. The binary is cached outside the checkout, keyed by the
# release, and rebuilt only when the scratch module's sources change:
#   $KEEPLOG_CACHE/bin/otelcol-$OTELCOL_VERSION/otelcol
# The first build takes about 10 minutes on 2 cores; a warm cache returns at once.
set -euo pipefail

OTELCOL_VERSION="${OTELCOL_VERSION:-v0.165.1}"
KEEPLOG_CACHE="${KEEPLOG_CACHE:-${HOME}/.cache/keeplog}"
BUILD_PARALLELISM="${BUILD_PARALLELISM:-2}"
SRC="$(cd "$(dirname "$0")/../test/e2e/otelcol" && pwd)"
OUT="${KEEPLOG_CACHE}/bin/otelcol-${OTELCOL_VERSION}"

log() { printf '[build-otelcol %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

# The sources' digest: a changed main.go or go.mod means a new binary even at the same release.
digest() { (cd "${SRC}" && cat main.go go.mod go.sum | sha256sum | cut -d' ' -f1); }

fresh() { [[ -x "${OUT}/otelcol" && -f "${OUT}/.complete" && "$(cat "${OUT}/.complete")" == "$(digest)" ]]; }

command -v go >/dev/null || die "go is not on PATH"
grep -q "opentelemetry-collector-contrib/receiver/filelogreceiver ${OTELCOL_VERSION}\$" "${SRC}/go.mod" ||
	die "${SRC}/go.mod does not pin filelogreceiver ${OTELCOL_VERSION}"
if fresh; then
	log "otelcol ${OTELCOL_VERSION}: already built in ${OUT}"
	exit 0
fi
mkdir -p "${KEEPLOG_CACHE}/bin"
exec 9>"${KEEPLOG_CACHE}/build-otelcol.lock"
flock 9
if fresh; then
	log "otelcol ${OTELCOL_VERSION}: built by another run in ${OUT}"
	exit 0
fi
tmp="${OUT}.tmp.$$"
rm -rf "${tmp}"
mkdir -p "${tmp}"
trap 'rm -rf "${tmp}"' EXIT
log "otelcol ${OTELCOL_VERSION}: go build in ${SRC} (about 10 minutes cold on 2 cores)"
start=${SECONDS}
(
	cd "${SRC}"
	export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly -p=${BUILD_PARALLELISM}" GOWORK=off
	nice -n 10 go build -trimpath -ldflags "-s -w -X main.version=${OTELCOL_VERSION}" -o "${tmp}/otelcol" .
) || die "go build failed in ${SRC}"
log "otelcol ${OTELCOL_VERSION}: built in $((SECONDS - start))s"
digest >"${tmp}/.complete"
rm -rf "${OUT}"
mv "${tmp}" "${OUT}"
trap - EXIT
log "otelcol ${OTELCOL_VERSION}: installed into ${OUT}/otelcol"
