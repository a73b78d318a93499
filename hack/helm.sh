#!/usr/bin/env bash
# Build Helm from the Go module proxy once, outside the checkout, and print the path of the binary:
#
#   $KEEPLOG_CACHE/bin/helm-$HELM_VERSION/helm
#
# `go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION` (hack/go-install-cached.sh) works as is (Helm's go.mod has no
# local replaces): about 2.5 min cold on 2 cores. All log output goes to stderr, so `HELM=$(hack/helm.sh)` works.
#
# `hack/helm.sh --ldflags` prints the ldflags the build adds (go-install-cached.sh runs it only when it builds).
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
export HELM_VERSION

# The Kubernetes version Helm assumes without a cluster (.Capabilities.KubeVersion, a chart's kubeVersion check)
# comes from ldflags, as in Helm's Makefile: client-go v0.X.Y → 1.X. Without them it would claim v1.20.
ldflags() {
	local gomod k8s_minor flags pkg
	gomod="$(cd / && GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" | sed -n 's/^[[:space:]]*"GoMod":[[:space:]]*"\(.*\)",\{0,1\}$/\1/p')"
	[[ -f "${gomod}" ]] || { echo "no go.mod for helm.sh/helm/v3@${HELM_VERSION}" >&2; return 1; }
	k8s_minor="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "${gomod}" | head -n1)"
	[[ -n "${k8s_minor}" ]] || { echo "no k8s.io/client-go in ${gomod}" >&2; return 1; }
	flags="-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
	for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
		flags+=" -X ${pkg}.k8sVersionMajor=1 -X ${pkg}.k8sVersionMinor=${k8s_minor}"
	done
	printf '%s\n' "${flags}"
}

if [[ "${1:-}" == --ldflags ]]; then
	ldflags
	exit
fi
here="$(cd "$(dirname "$0")" && pwd)"
exec "${here}/go-install-cached.sh" helm helm.sh/helm/v3/cmd/helm "${HELM_VERSION}" "$(printf '%q' "${here}/helm.sh") --ldflags"
