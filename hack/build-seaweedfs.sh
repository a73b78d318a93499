#!/usr/bin/env bash
# Build SeaweedFS's `weed`, the S3-speaking server the S3 archive tests run (internal/s3test starts `weed mini`-style
# `weed server -s3` on 127.0.0.1), from the Go module proxy only.
#
# SeaweedFS's go.mod has a replace directive, so `go install …@version` refuses it; the module is downloaded into the
# module cache (go mod download) and built there with its own go.mod and go.sum (-mod=readonly), so keeplog's go.mod
# does not grow. The binary is cached outside the checkout, keyed by the version:
#   $KEEPLOG_CACHE/bin/weed-$SEAWEEDFS_VERSION/weed
# The first build took 41 minutes on 2 cores shared with other builds (load 20-30; 2026-12-01); a warm cache returns
# at once.
set -euo pipefail

SEAWEEDFS_VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
KEEPLOG_CACHE="${KEEPLOG_CACHE:-${HOME}/.cache/keeplog}"
BUILD_PARALLELISM="${BUILD_PARALLELISM:-2}"
OUT="${KEEPLOG_CACHE}/bin/weed-${SEAWEEDFS_VERSION}"
MOD=github.com/seaweedfs/seaweedfs

log() { printf '[build-seaweedfs %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

fresh() { [[ -x "${OUT}/weed" && -f "${OUT}/.complete" && "$(cat "${OUT}/.complete")" == "${SEAWEEDFS_VERSION}" ]]; }

command -v go >/dev/null || die "go is not on PATH"
if fresh; then
	log "weed ${SEAWEEDFS_VERSION}: already built in ${OUT}"
	exit 0
fi
mkdir -p "${KEEPLOG_CACHE}/bin"
exec 9>"${KEEPLOG_CACHE}/build-seaweedfs.lock"
flock 9
if fresh; then
	log "weed ${SEAWEEDFS_VERSION}: built by another run in ${OUT}"
	exit 0
fi
tmp="${OUT}.tmp.$$"
rm -rf "${tmp}"
mkdir -p "${tmp}"
trap 'rm -rf "${tmp}"' EXIT
export GOWORK=off GOFLAGS=-mod=mod
dir="$(cd "${tmp}" && go mod download -json "${MOD}@${SEAWEEDFS_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -n "${dir}" && -f "${dir}/go.mod" ]] || die "go mod download ${MOD}@${SEAWEEDFS_VERSION} gave no module directory"
log "weed ${SEAWEEDFS_VERSION}: go build in ${dir} (tens of minutes cold on 2 cores)"
start=${SECONDS}
(
	cd "${dir}"
	export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly -p=${BUILD_PARALLELISM}"
	nice -n 10 go build -trimpath -ldflags "-s -w" -o "${tmp}/weed" ./weed
) || die "go build failed in ${dir}"
log "weed ${SEAWEEDFS_VERSION}: built in $((SECONDS - start))s"
printf '%s' "${SEAWEEDFS_VERSION}" >"${tmp}/.complete"
rm -rf "${OUT}"
mv "${tmp}" "${OUT}"
trap - EXIT
log "weed ${SEAWEEDFS_VERSION}: installed into ${OUT}/weed"
