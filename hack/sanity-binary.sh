#!/usr/bin/env bash
# Runs the upstream csi-sanity command (v5.6.0, default ID generator) against the built bin/keeplog, with no cluster:
# no kubeconfig and no in-cluster environment, so keeplog must say in one log line that it runs with reduced metadata.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KEEPLOG_CACHE:-$HOME/.cache/keeplog}"
SANITY="$CACHE/bin/csi-sanity-v5.6.0/csi-sanity"
if [ ! -x "$SANITY" ]; then
  echo "building csi-sanity v5.6.0 into $SANITY"
  GOBIN="$(dirname "$SANITY")" go install github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@v5.6.0
fi
[ -x bin/keeplog ] || { echo "bin/keeplog is missing: run make build" >&2; exit 1; }

work=$(mktemp -d /tmp/keeplog-sanity.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"; wait "$pid" || true
  fi
  # csi-sanity unpublishes everything it published; anything still mounted under $work is a failure already reported.
  grep -q " $work" /proc/self/mounts && { echo "mounts left under $work" >&2; grep " $work" /proc/self/mounts >&2; }
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/mnt"
# A free loopback port for /healthz and /metrics.
http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
env -u KUBECONFIG -u KUBERNETES_SERVICE_HOST -u KUBERNETES_SERVICE_PORT \
  bin/keeplog --endpoint "unix://$work/csi.sock" --node-id sanity-node --root "$work/root" --http-address "127.0.0.1:$http_port" \
  >"$work/keeplog.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -S "$work/csi.sock" ] && break; sleep 0.1; done
[ -S "$work/csi.sock" ] || { cat "$work/keeplog.log"; echo "keeplog did not start" >&2; exit 1; }

"$SANITY" --csi.endpoint "unix://$work/csi.sock" --csi.mountdir "$work/mnt/target" --csi.stagingdir "$work/mnt/staging" \
  --csi.testvolumesize 67108864 -ginkgo.no-color 2>&1 | tee "$work/sanity.log" | grep -E "Ran [0-9]+ of|Passed|FAIL|\[FAILED\]" || true
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
  tail -50 "$work/sanity.log"; echo "csi-sanity failed against bin/keeplog" >&2; exit 1
fi
health=$(curl -fsS "http://127.0.0.1:$http_port/healthz") || { echo "/healthz did not answer 200" >&2; exit 1; }
[ "$health" = ok ] || { echo "/healthz said $health" >&2; exit 1; }
# Every call csi-sanity made is counted, by method and code.
curl -fsS "http://127.0.0.1:$http_port/metrics" >"$work/metrics"
grep -q 'keeplog_csi_operations_total{code="OK",method="/csi.v1.Node/NodePublishVolume"}' "$work/metrics" ||
  { grep keeplog_csi "$work/metrics" | head; echo "/metrics does not count NodePublishVolume calls" >&2; exit 1; }
grep -q 'keeplog_csi_operations_total{code="InvalidArgument",method="/csi.v1.Node/NodePublishVolume"}' "$work/metrics" ||
  { echo "/metrics does not count refused NodePublishVolume calls by code" >&2; exit 1; }
# Every long-running loop that runs without an API server records its progress (internal/liveness).
for loop in gc; do
  grep -q "^keeplog_loop_last_progress_seconds{loop=\"$loop\"}" "$work/metrics" ||
    { grep keeplog_loop "$work/metrics"; echo "/metrics has no keeplog_loop_last_progress_seconds for loop $loop" >&2; exit 1; }
done
if [ "$(grep -c 'reduced metadata' "$work/keeplog.log")" -ne 1 ]; then
  cat "$work/keeplog.log"; echo "keeplog did not say exactly once that it runs with reduced metadata" >&2; exit 1
fi
echo "csi-sanity against bin/keeplog: passed (and /healthz, /metrics answered)"
