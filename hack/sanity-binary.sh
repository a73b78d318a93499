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
env -u KUBECONFIG -u KUBERNETES_SERVICE_HOST -u KUBERNETES_SERVICE_PORT \
  bin/keeplog --endpoint "unix://$work/csi.sock" --node-id sanity-node --root "$work/root" --http-address 127.0.0.1:0 \
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
if [ "$(grep -c 'reduced metadata' "$work/keeplog.log")" -ne 1 ]; then
  cat "$work/keeplog.log"; echo "keeplog did not say exactly once that it runs with reduced metadata" >&2; exit 1
fi
echo "csi-sanity against bin/keeplog: passed"
