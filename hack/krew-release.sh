#!/usr/bin/env bash
# The kubectl plugin's krew release: for each platform, kubectl-keeplog (the `make build` flags, cross-compiled) and
# LICENSE in a deterministic tar.gz (sorted, mtime 0, root owner, gzip without a name or time) under bin/krew/, and
# krew/keeplog.yaml written with their sha256 and the release URLs of VERSION. Run it for a release; test/krew
# validates the committed manifest with krew's own validator.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${VERSION:?set VERSION, e.g. v0.1.0}"
PLATFORMS="${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64}"
BASE_URL="${BASE_URL:-https://github.com/keeplog/keeplog/releases/download/${VERSION}}"
out="${OUT_DIR:-bin/krew}"
manifest="${OUT_MANIFEST:-krew/keeplog.yaml}"
mkdir -p "${out}"
platforms=""
for p in ${PLATFORMS}; do
	os="${p%/*}" arch="${p#*/}"
	dir="${out}/kubectl-keeplog_${os}_${arch}"
	rm -rf "${dir}" && mkdir -p "${dir}"
	CGO_ENABLED=0 GOOS="${os}" GOARCH="${arch}" nice -n 10 go build -trimpath -ldflags "-s -w" -o "${dir}/kubectl-keeplog" ./cmd/kubectl-keeplog
	cp LICENSE "${dir}/LICENSE"
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "${dir}" -cf - kubectl-keeplog LICENSE | gzip -n -9 >"${dir}.tar.gz"
	sum=$(sha256sum "${dir}.tar.gz" | cut -d' ' -f1)
	platforms+="  - selector:
      matchLabels: {os: ${os}, arch: ${arch}}
    uri: ${BASE_URL}/kubectl-keeplog_${os}_${arch}.tar.gz
    sha256: ${sum}
    bin: kubectl-keeplog
    files:
      - {from: kubectl-keeplog, to: .}
      - {from: LICENSE, to: .}
"
done
cat >"${manifest}" <<YAML
# The krew manifest of \`kubectl keeplog\` (cmd/kubectl-keeplog), written by hack/krew-release.sh for ${VERSION}:
# each sha256 is that of the archive it builds (bin/krew/). test/krew validates it with krew's own validator.
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: keeplog
spec:
  version: ${VERSION}
  homepage: https://github.com/keeplog/keeplog
  shortDescription: Find and fetch dead pods' log directories kept by keeplog
  description: |
    kubectl keeplog lists the pod directories the keeplog CSI driver kept on the nodes after their pods ended, and
    fetches their files (logs, stdout copies, heap dumps) through the aggregated API retainedpods.keeplog.csi.io,
    with your own kubeconfig: you see a pod's files where you may read its logs (get pods/log). No node access.
      kubectl keeplog ls [-n ns | -A] [--owner deploy/x] [--reason OOMKilled] [--node n]
      kubectl keeplog logs <pod> [-c container] [--file gc.log] [-f]
      kubectl keeplog cp <pod>:<path> <local>
      kubectl keeplog describe <pod>
  caveats: |
    The cluster needs keeplog's retrieval API (the chart's retrieval.enabled=true).
  platforms:
YAML
printf '%s' "${platforms}" >>"${manifest}"
echo "${manifest} written for ${VERSION}"
