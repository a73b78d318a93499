#!/usr/bin/env bash
# Install the Debian 12 packages the e2e lab needs (run as root). Idempotent:
#   - skips packages that are already installed, and runs `apt-get update` only when something is missing;
#   - starts no services: a temporary /usr/sbin/policy-rc.d forbids invoke-rc.d from starting any, and any
#     etcd/containerd/sshd daemon a package postinst started anyway is stopped by the PID in its pid file.
set -euo pipefail

PACKAGES=(
	etcd-server
	containerd
	runc
	containernetworking-plugins
	busybox-static
	openssh-server
	openssl
	iptables
	conntrack
	util-linux
	e2fsprogs
	curl
	python3
	zstd
	rclone
	podman
	docker.io
	openjdk-17-jdk-headless
)

log() { printf '[install-deps] %s\n' "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

[[ "$(id -u)" == 0 ]] || die "must run as root (uid is $(id -u))"
command -v apt-get >/dev/null || die "apt-get not found: this script is for Debian"

installed() {
	[[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

missing=()
for p in "${PACKAGES[@]}"; do
	if installed "${p}"; then
		log "${p}: already installed"
	else
		missing+=("${p}")
	fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
	log "all packages present"
	exit 0
fi

# Daemons that were already running before we installed anything are not ours to stop.
daemon_pidfiles=(/run/etcd.pid /run/etcd/etcd.pid /var/run/etcd.pid /run/containerd.pid /run/containerd/containerd.pid /run/sshd.pid /var/run/sshd.pid /run/docker.pid /var/run/docker.pid)
declare -A preexisting=()
for f in "${daemon_pidfiles[@]}"; do
	if [[ -s "${f}" ]]; then
		pid="$(tr -dc '0-9' <"${f}")"
		[[ -n "${pid}" ]] && kill -0 "${pid}" 2>/dev/null && preexisting["${pid}"]=1
	fi
done
declare -A preexisting_comm=()
for comm in etcd containerd sshd dockerd; do
	for pid in $(pidof "${comm}" 2>/dev/null || true); do preexisting_comm["${pid}"]=1; done
done

# Forbid service starts during the install (Debian policy-rc.d protocol: exit 101 = action forbidden).
created_policy=0
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
	printf '#!/bin/sh\n# temporary, written by keeplog hack/install-deps.sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 0755 /usr/sbin/policy-rc.d
	created_policy=1
fi
cleanup() {
	if [[ ${created_policy} == 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
apt-get update -q
log "apt-get install ${missing[*]}"
apt-get install -y -q --no-install-recommends "${missing[@]}"

# stop_new_daemon PID EXPECTED_COMM: stop a daemon a postinst started, by PID, if it is not one we found running.
stop_new_daemon() {
	local pid="$1" want="$2" comm i
	[[ -n "${pid}" ]] || return 0
	[[ -z "${preexisting[${pid}]:-}" && -z "${preexisting_comm[${pid}]:-}" ]] || return 0
	comm="$(cat "/proc/${pid}/comm" 2>/dev/null || true)"
	[[ "${comm}" == "${want}" ]] || return 0
	log "stopping ${want} (pid ${pid}) started by the package install"
	kill -TERM "${pid}" 2>/dev/null || true
	for i in $(seq 1 50); do
		kill -0 "${pid}" 2>/dev/null || return 0
		sleep 0.1
	done
	log "${want} (pid ${pid}) ignored SIGTERM; sending SIGKILL"
	kill -KILL "${pid}" 2>/dev/null || true
}

for f in "${daemon_pidfiles[@]}"; do
	[[ -s "${f}" ]] || continue
	pid="$(tr -dc '0-9' <"${f}")"
	case "${f}" in
	*etcd*) stop_new_daemon "${pid}" etcd ;;
	*containerd*) stop_new_daemon "${pid}" containerd ;;
	*sshd*) stop_new_daemon "${pid}" sshd ;;
	*docker*) stop_new_daemon "${pid}" dockerd ;;
	esac
done
# Daemons without a pid file: only those that did not exist before the install.
for comm in etcd containerd sshd dockerd; do
	for pid in $(pidof "${comm}" 2>/dev/null || true); do
		stop_new_daemon "${pid}" "${comm}"
	done
done

for p in "${PACKAGES[@]}"; do
	installed "${p}" || die "${p} is still not installed"
done
log "done: installed ${missing[*]}"
