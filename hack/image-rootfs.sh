#!/usr/bin/env bash
# The base of keeplog's image for one architecture, without a Docker daemon or a registry: the Dockerfile's stage 2
# is debian:bookworm-slim plus util-linux's `mount`, and of that keeplog runs only mount(8) and umount(8)
# (k8s.io/mount-utils). This script fetches exactly those from Debian bookworm with apt, for any architecture, and
# unpacks them into a directory the image writer (hack/image) turns into the base layer:
#
#   hack/image-rootfs.sh ARCH DIR     e.g. hack/image-rootfs.sh arm64 bin/image/rootfs-arm64
#
# The packages are `mount` and its run-time dependency closure (libmount1, libblkid1, libselinux1, libsmartcols1,
# libpcre2-8-0, libc6, libgcc-s1, gcc-12-base); `util-linux` (mount's other dependency) only provides the other tools.
# apt runs with its own state directory under $KEEPLOG_CACHE, so the machine's apt configuration (architectures,
# lists) is not changed; the .debs are cached there, keyed by architecture. DIR/../packages-ARCH.txt lists
# name=version of what went in.
set -euo pipefail

ARCH="${1:?usage: $0 ARCH DIR}"
DIR="${2:?usage: $0 ARCH DIR}"
KEEPLOG_CACHE="${KEEPLOG_CACHE:-${HOME}/.cache/keeplog}"
PACKAGES=(mount libmount1 libblkid1 libselinux1 libsmartcols1 libpcre2-8-0 libc6 libgcc-s1 gcc-12-base)
apt_dir="${KEEPLOG_CACHE}/image/apt-${ARCH}"
debs="${KEEPLOG_CACHE}/image/debs-${ARCH}"

log() { printf '[image-rootfs %s] %s\n' "${ARCH}" "$*" >&2; }
apt() {
	command apt-get -q -o Dir::State="${apt_dir}/state" -o Dir::State::status="${apt_dir}/status" \
		-o Dir::Cache="${apt_dir}/cache" -o APT::Architecture="${ARCH}" -o APT::Architectures="${ARCH}" \
		-o APT::Sandbox::User=root "$@"
}

mkdir -p "${apt_dir}/state/lists/partial" "${apt_dir}/cache/archives/partial" "${debs}"
touch "${apt_dir}/status"
exec 9>"${apt_dir}/lock"
flock 9
# One `apt-get update` a day per architecture: the lists name the current (security-fixed) versions.
if [[ -z "$(find "${apt_dir}/state/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null)" ]]; then
	log "apt-get update (${ARCH} lists in ${apt_dir})"
	apt update >&2
fi
have=true
for p in "${PACKAGES[@]}"; do
	v="$(apt-cache -o Dir::State="${apt_dir}/state" -o Dir::State::status="${apt_dir}/status" -o Dir::Cache="${apt_dir}/cache" \
		-o APT::Architecture="${ARCH}" -o APT::Architectures="${ARCH}" policy "${p}" | sed -n 's/^  Candidate: //p')"
	[[ -n "${v}" && "${v}" != "(none)" ]] || { log "no ${p} for ${ARCH}"; exit 1; }
	compgen -G "${debs}/${p}_${v//:/%3a}_*.deb" >/dev/null || have=false
done
if ! ${have}; then
	log "apt-get download ${PACKAGES[*]}"
	(cd "${debs}" && rm -f ./*.deb && apt download "${PACKAGES[@]}" >&2)
fi
rm -rf "${DIR}"
mkdir -p "${DIR}"
: >"${DIR}.packages"
for p in "${PACKAGES[@]}"; do
	deb="$(ls "${debs}/${p}"_*.deb | sort -V | tail -n1)"
	dpkg-deb -x "${deb}" "${DIR}"
	printf '%s=%s\n' "${p}" "$(dpkg-deb -f "${deb}" Version)" >>"${DIR}.packages"
done
# Documentation, manuals and locales of the packages are not needed at run time (bookworm-slim drops them too).
rm -rf "${DIR}/usr/share/doc" "${DIR}/usr/share/man" "${DIR}/usr/share/locale" "${DIR}/usr/share/lintian" \
	"${DIR}/usr/share/bash-completion"
log "$(wc -l <"${DIR}.packages") packages in ${DIR}"
