#!/usr/bin/env bash
# Build Helm from the Go module proxy (no download site, no package manager) once, outside the checkout, and print
# the path of the binary:
#
#   $KEEPLOG_CACHE/bin/helm-$HELM_VERSION/helm
#
# `go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION` works as is (Helm's go.mod has no local replaces): about
# 2.5 min cold on 2 cores. Idempotent; a second invocation while one builds waits on the same lock as build-k8s.sh.
# All log output goes to stderr, so `HELM=$(hack/helm.sh)` works.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KEEPLOG_CACHE="${KEEPLOG_CACHE:-${HOME}/.cache/keeplog}"
BUILD_PARALLELISM="${BUILD_PARALLELISM:-2}"
DIR="${KEEPLOG_CACHE}/bin/helm-${HELM_VERSION}"

log() { printf '[helm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

have() { [[ -f "${DIR}/.complete" && -x "${DIR}/helm" ]]; }

if have; then
	printf '%s\n' "${DIR}/helm"
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
	printf '%s\n' "${DIR}/helm"
	exit 0
fi
tmp="${DIR}.tmp.$$"
rm -rf "${tmp}"
mkdir -p "${tmp}"
trap 'rm -rf "${tmp}"' EXIT
# The Kubernetes version Helm assumes without a cluster (.Capabilities.KubeVersion, a chart's kubeVersion check)
# comes from ldflags, as in Helm's Makefile: client-go v0.X.Y → 1.X. Without them it would claim v1.20.
gomod="$(cd / && GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" | sed -n 's/^[[:space:]]*"GoMod":[[:space:]]*"\(.*\)",\{0,1\}$/\1/p')"
[[ -f "${gomod}" ]] || die "no go.mod for helm.sh/helm/v3@${HELM_VERSION}"
k8s_minor="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "${gomod}" | head -n1)"
[[ -n "${k8s_minor}" ]] || die "no k8s.io/client-go in ${gomod}"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
	ldflags+=" -X ${pkg}.k8sVersionMajor=1 -X ${pkg}.k8sVersionMinor=${k8s_minor}"
done
log "go install helm.sh/helm/v3/cmd/helm@${HELM_VERSION} (a few minutes the first time)"
start=${SECONDS}
(
	cd /
	export CGO_ENABLED=0 GOBIN="${tmp}" GOFLAGS="-buildvcs=false -p=${BUILD_PARALLELISM}"
	nice -n 10 go install -trimpath -ldflags "${ldflags}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
) >&2 || die "go install helm@${HELM_VERSION} failed"
"${tmp}/helm" version --short >&2 || die "the built helm does not run"
touch "${tmp}/.complete"
rm -rf "${DIR}"
mv "${tmp}" "${DIR}"
trap - EXIT
log "built in $((SECONDS - start))s: ${DIR}/helm"
printf '%s\n' "${DIR}/helm"
