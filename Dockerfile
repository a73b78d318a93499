# keeplog's image (node plugin, and keeplog-api). Build: docker build -t ghcr.io/keeplog/keeplog:$(git describe --tags --always) \
#   --build-arg VERSION=$(git describe --tags --always) .
#
# Stage 1 builds a static binary (CGO_ENABLED=0: no libc needed at run time, same flags and tags as `make build`;
# the Makefile says why -tags grpcnotrace).
# Stage 2 is debian:bookworm-slim because k8s.io/mount-utils execs mount(8) and umount(8) for the bind mounts keeplog
# makes; distroless/static and scratch have neither. util-linux's mount (Debian package `mount`) is what kubelet and
# the e2e nodes use: its "not mounted" message lets mount-utils trust umount instead of re-checking the mount table,
# and `mount -o bind,remount,ro` behaves as mount-utils expects. No shell tools are needed besides those.
ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY pkg/ pkg/
COPY internal/ internal/
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
	go build -tags grpcnotrace -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/keeplog ./cmd/keeplog
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
	go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/keeplog-api ./cmd/keeplog-api

FROM debian:bookworm-slim
# `mount` (util-linux: mount, umount) is in bookworm-slim already; installing it by name keeps it if the base changes.
RUN apt-get update \
	&& apt-get install -y --no-install-recommends mount \
	&& rm -rf /var/lib/apt/lists/*
COPY --from=build /out/keeplog /usr/local/bin/keeplog
# keeplog-api (the aggregated API for retained pods, docs/retrieval.md): the chart's keeplog-api Deployment runs it as
# its command. One image for both: one base and one manifest for registries and mirrors.
COPY --from=build /out/keeplog-api /usr/local/bin/keeplog-api
# Runs as root: bind mounts into kubelet's pod directories need it (the chart's container is privileged).
ENTRYPOINT ["/usr/local/bin/keeplog"]
