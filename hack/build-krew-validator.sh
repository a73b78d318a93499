#!/usr/bin/env bash
# Build krew's own manifest validator (sigs.k8s.io/krew/cmd/validate-krew-manifest) and krew itself (as
# kubectl-krew: the validator installs each platform with `kubectl krew install --manifest`) from the Go module
# proxy, cached outside the checkout, keyed by the krew release:
#   $KEEPLOG_CACHE/bin/krew-$KREW_VERSION/{validate-krew-manifest,kubectl-krew}
# test/krew runs them on krew/keeplog.yaml. About a minute cold; a warm cache returns at once. Prints the
# validator's path.
set -euo pipefail

KREW_VERSION="${KREW_VERSION:-v0.4.3}"
KEEPLOG_CACHE="${KEEPLOG_CACHE:-${HOME}/.cache/keeplog}"
OUT="${KEEPLOG_CACHE}/bin/krew-${KREW_VERSION}"

log() { printf '[build-krew-validator %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ -x "${OUT}/validate-krew-manifest" && -x "${OUT}/kubectl-krew" && -f "${OUT}/.complete" ]]; then
	echo "${OUT}/validate-krew-manifest"
	exit 0
fi
mkdir -p "${KEEPLOG_CACHE}/bin"
exec 9>"${KEEPLOG_CACHE}/build-krew-validator.lock"
flock 9
if [[ ! -x "${OUT}/kubectl-krew" || ! -f "${OUT}/.complete" ]]; then
	tmp="${OUT}.tmp.$$"
	rm -rf "${tmp}"
	mkdir -p "${tmp}"
	trap 'rm -rf "${tmp}"' EXIT
	log "validate-krew-manifest ${KREW_VERSION}: go install from the module proxy"
	# Outside any module, so keeplog's go.mod is untouched.
	(cd "${tmp}" && CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=mod GOBIN="${tmp}" \
		nice -n 10 go install "sigs.k8s.io/krew/cmd/validate-krew-manifest@${KREW_VERSION}" \
			"sigs.k8s.io/krew/cmd/krew@${KREW_VERSION}") >&2
	mv "${tmp}/krew" "${tmp}/kubectl-krew"
	touch "${tmp}/.complete"
	rm -rf "${OUT}"
	mv "${tmp}" "${OUT}"
	trap - EXIT
fi
echo "${OUT}/validate-krew-manifest"
