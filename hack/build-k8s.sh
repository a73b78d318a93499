#!/usr/bin/env bash
# Build the Kubernetes binaries the e2e lab needs, from the Go module proxy only.
#
#   kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl  (k8s.io/kubernetes $K8S_VERSION)
#   csi-provisioner                                                      (external-provisioner/v6 $PROVISIONER_VERSION)
#
# `go install k8s.io/kubernetes/cmd/...@v` is refused because k8s.io/kubernetes' go.mod has
# `=> ./staging/...` replace directives, so each build goes through a scratch module (outside the
# checkout, under $KEEPLOG_CACHE/src) whose go.mod is the upstream go.mod with the module line
# renamed, each local replace turned into `k8s.io/X => k8s.io/X v0.<minor>.<patch>`, and a require
# of the upstream module added.
#
# Output (keyed by version, never inside the checkout):
#   $KEEPLOG_CACHE/bin/k8s-$K8S_VERSION/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kubectl}
#   $KEEPLOG_CACHE/bin/csi-provisioner-$PROVISIONER_VERSION/csi-provisioner
#
# Idempotent: when the binaries are present it exits immediately.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
PROVISIONER_VERSION="${PROVISIONER_VERSION:-v6.3.0}"
KEEPLOG_CACHE="${KEEPLOG_CACHE:-${HOME}/.cache/keeplog}"
BUILD_PARALLELISM="${BUILD_PARALLELISM:-2}"

K8S_BIN_DIR="${KEEPLOG_CACHE}/bin/k8s-${K8S_VERSION}"
PROV_BIN_DIR="${KEEPLOG_CACHE}/bin/csi-provisioner-${PROVISIONER_VERSION}"
K8S_TOOLS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

log() { printf '[build-k8s %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

# staging version for a k8s.io/kubernetes version: v1.34.4 -> v0.34.4
staging_version() { printf 'v0.%s\n' "${1#v1.}"; }

have_all() {
	local dir="$1"; shift
	[[ -f "${dir}/.complete" ]] || return 1
	local b
	for b in "$@"; do [[ -x "${dir}/${b}" ]] || return 1; done
}

# upstream_gomod MODULE@VERSION -> prints the path of that module's go.mod in the module cache
upstream_gomod() {
	local json path
	json="$(cd / && GOFLAGS=-mod=mod go mod download -json "$2")" || die "go mod download $2 failed"
	path="$(printf '%s\n' "${json}" | sed -n 's/^[[:space:]]*"GoMod":[[:space:]]*"\(.*\)",\{0,1\}$/\1/p' | head -n1)"
	[[ -n "${path}" && -f "${path}" ]] || die "no GoMod path for $2 in: ${json}"
	printf '%s\n' "${path}"
}

# write_scratch_gomod UPSTREAM_GOMOD SCRATCH_MODULE UPSTREAM_MODULE UPSTREAM_VERSION STAGING_VERSION > go.mod
# Keeps go/godebug/require/replace/exclude lines, renames the module, rewrites local replaces.
write_scratch_gomod() {
	local src="$1" name="$2" upmod="$3" upver="$4" stver="$5"
	awk -v name="${name}" -v stver="${stver}" '
		/^module[[:space:]]/ { print "module " name; next }
		/^[[:space:]]*toolchain[[:space:]]/ { next }
		{
			# "k8s.io/api => ./staging/src/k8s.io/api" (inside a replace block or single-line form)
			if (match($0, /=>[[:space:]]*\.\.?\//)) {
				line = $0
				sub(/^[[:space:]]*replace[[:space:]]+/, "", line)
				split(line, f, /[[:space:]]+/)
				mod = f[1]; if (mod == "") mod = f[2]
				prefix = ($0 ~ /^[[:space:]]*replace[[:space:]]/) ? "replace " : "\t"
				print prefix mod " => " mod " " stver
				next
			}
			print
		}
	' "${src}"
	printf '\nrequire %s %s\n' "${upmod}" "${upver}"
}

# scratch_build NAME UPSTREAM_MODULE UPSTREAM_VERSION STAGING_VERSION OUT_DIR LDFLAGS PKG...
scratch_build() {
	local name="$1" upmod="$2" upver="$3" stver="$4" out="$5" ldflags="$6"; shift 6
	local pkgs=("$@")
	local src="${KEEPLOG_CACHE}/src/${name}"
	mkdir -p "${src}"
	log "${name}: scratch module in ${src}"

	if [[ ! -f "${src}/.tidy-done" ]]; then
		local gomod
		gomod="$(upstream_gomod "${src}" "${upmod}@${upver}")"
		log "${name}: upstream go.mod is ${gomod}"
		write_scratch_gomod "${gomod}" "keeplog.local/build/${name}" "${upmod}" "${upver}" "${stver}" >"${src}/go.mod"
		rm -f "${src}/go.sum"
		{
			echo '//go:build tools'
			echo
			echo '// Package tools pins the commands this scratch module builds.'
			echo 'package tools'
			echo
			echo 'import ('
			local p
			for p in "${pkgs[@]}"; do printf '\t_ "%s"\n' "${p}"; done
			echo ')'
		} >"${src}/tools.go"
		log "${name}: go mod tidy (downloads modules; a few minutes the first time)"
		(cd "${src}" && nice -n 10 go mod tidy) || die "${name}: go mod tidy failed in ${src}"
		touch "${src}/.tidy-done"
	fi

	local tmp="${out}.tmp.$$"
	rm -rf "${tmp}"
	mkdir -p "${tmp}"
	trap 'rm -rf "'"${tmp}"'"' EXIT
	log "${name}: go build -p ${BUILD_PARALLELISM} ${pkgs[*]}"
	local start=${SECONDS}
	(
		cd "${src}"
		export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=mod -p=${BUILD_PARALLELISM}"
		nice -n 10 go build -trimpath -ldflags "${ldflags}" -o "${tmp}/" "${pkgs[@]}"
	) || { rm -rf "${tmp}"; die "${name}: go build failed in ${src}"; }
	log "${name}: built in $((SECONDS - start))s"
	touch "${tmp}/.complete"
	rm -rf "${out}"
	mkdir -p "$(dirname "${out}")"
	mv "${tmp}" "${out}"
	trap - EXIT
	log "${name}: installed into ${out}: $(cd "${out}" && ls | tr '\n' ' ')"
}

build_k8s() {
	if have_all "${K8S_BIN_DIR}" "${K8S_TOOLS[@]}"; then
		log "kubernetes ${K8S_VERSION}: already built in ${K8S_BIN_DIR}"
		return
	fi
	local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
	local vpkg="k8s.io/component-base/version"
	local ldflags="-s -w -X ${vpkg}.gitVersion=${K8S_VERSION} -X ${vpkg}.gitMajor=1 -X ${vpkg}.gitMinor=${minor}"
	ldflags+=" -X ${vpkg}.gitTreeState=clean -X ${vpkg}.buildDate=1970-01-01T00:00:00Z"
	local pkgs=() t
	for t in "${K8S_TOOLS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/${t}"); done
	scratch_build "k8s-${K8S_VERSION}" k8s.io/kubernetes "${K8S_VERSION}" "$(staging_version "${K8S_VERSION}")" \
		"${K8S_BIN_DIR}" "${ldflags}" "${pkgs[@]}"
}

build_provisioner() {
	if have_all "${PROV_BIN_DIR}" csi-provisioner; then
		log "csi-provisioner ${PROVISIONER_VERSION}: already built in ${PROV_BIN_DIR}"
		return
	fi
	local mod="github.com/kubernetes-csi/external-provisioner/v6"
	# external-provisioner's replaces pin k8s.io staging modules to versions, which a scratch
	# module can keep as they are; any local (./) replace is rewritten like the kubernetes ones.
	scratch_build "csi-provisioner-${PROVISIONER_VERSION}" "${mod}" "${PROVISIONER_VERSION}" \
		"$(staging_version "${K8S_VERSION}")" "${PROV_BIN_DIR}" "-s -w -X main.version=${PROVISIONER_VERSION}" \
		"${mod}/cmd/csi-provisioner"
}

command -v go >/dev/null || die "go is not on PATH"
# Fast path without the lock: everything is already built.
if have_all "${K8S_BIN_DIR}" "${K8S_TOOLS[@]}" && have_all "${PROV_BIN_DIR}" csi-provisioner; then
	log "kubernetes ${K8S_VERSION} and csi-provisioner ${PROVISIONER_VERSION}: already built in ${KEEPLOG_CACHE}/bin"
	exit 0
fi
# One build at a time: a second invocation waits, then finds the binaries built.
mkdir -p "${KEEPLOG_CACHE}"
exec 9>"${KEEPLOG_CACHE}/build.lock"
if ! flock -n 9; then
	log "another build-k8s.sh is running; waiting for ${KEEPLOG_CACHE}/build.lock"
	flock 9
fi
build_k8s
build_provisioner
log "done"
