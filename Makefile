# keeplog — see README.md and docs/development.md. Every target works as root on a fresh Debian 12 machine with Go installed.
SHELL := /bin/bash
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO ?= go
CACHE ?= $(HOME)/.cache/keeplog
export KEEPLOG_CACHE := $(CACHE)

.PHONY: all build deps k8s otelcol seaweedfs lint unit sanity sanity-binary soak soak-short e2e demo test bench bench-scale clean

all: build

# -tags grpcnotrace: gRPC without golang.org/x/net/trace, whose init registers /debug/requests on
# http.DefaultServeMux (keeplog never serves it) and links html/template; text/template's calls of methods by name
# make the linker keep every exported method of every type, 11 MB of the binary (the Dockerfile builds the same way;
# test/chart checks both).
# bin/keeplog-api (the aggregated API for retained pods, docs/retrieval.md) is its own binary so that bin/keeplog
# does not link k8s.io/apiserver; bin/kubectl-keeplog is the kubectl plugin (`kubectl keeplog`).
build:
	CGO_ENABLED=0 $(GO) build -tags grpcnotrace -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/keeplog ./cmd/keeplog
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/keeplog-api ./cmd/keeplog-api
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/kubectl-keeplog ./cmd/kubectl-keeplog

# Debian packages the tests need (etcd, containerd, runc, CNI plugins, busybox, sshd, ...).
deps:
	hack/install-deps.sh

# Kubernetes v1.34.4 and csi-provisioner v6.3.0 built from the Go module proxy, cached in $(CACHE).
k8s:
	hack/build-k8s.sh

# The OpenTelemetry Collector the collector e2e runs (test/e2e/otelcol, its own scratch module: filelog receiver and
# file exporter at v0.165.1), built from the Go module proxy and cached in $(CACHE)/bin/otelcol-<version>.
otelcol:
	hack/build-otelcol.sh

# golangci-lint v2.15.0 (.golangci.yml: errcheck, govet, staticcheck, unused, revive, gocritic, ... over every package
# with the e2e and soak tags), built from the Go module proxy into $(CACHE) by hack/golangci-lint.sh; any finding fails.
# SeaweedFS's weed (master, volume, filer and S3 gateway), the S3 server the archiver's S3 tests start on 127.0.0.1
# (internal/s3test), built from the Go module proxy and cached in $(CACHE)/bin/weed-<version> (41 minutes cold on a
# loaded 2-core machine; once).
seaweedfs:
	hack/build-seaweedfs.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	lint=$$(hack/golangci-lint.sh) && nice -n 10 "$$lint" run ./...
	hack/manifests.sh --verify
	$(GO) test -count=1 ./test/docs/

unit: seaweedfs otelcol
	$(GO) test -race -count=1 -timeout 40m ./pkg/... ./cmd/... ./internal/... ./hack/... ./test/arch/

sanity: build
	$(GO) test -count=1 ./test/sanity/
	hack/sanity-binary.sh

# The soak (test/soak, build tag soak): bin/keeplog and a real OpenSSH sshd, pods published and unpublished over
# CSI, dumps at random depths and sizes, short retention, keeplog SIGKILLed and restarted, sshd restarted; the
# archive path's invariants are printed with their figures at the end. soak-short (in make test) takes about 2
# minutes, soak about 10.
soak-short: build
	KEEPLOG_SOAK=short $(GO) test -tags soak -count=1 -timeout 15m -v -run '^TestSoak$$' ./test/soak/

soak: build
	KEEPLOG_SOAK=long $(GO) test -tags soak -count=1 -timeout 40m -v -run '^TestSoak$$' ./test/soak/

# Real JVM heap dumps (test/heapdumps: HeapFill.java compiled with the machine's javac, its heap filled with a
# service's mix of objects and dumped with jcmd GC.heap_dump), KEEPLOG_HEAP_BENCH_COUNT of the benchmark's sizes
# (256 MiB - 1 GiB), cached by (size, seed) in $(CACHE)/heapdumps, never in the checkout; each one's size and
# zstd -3 ratio printed. make bench-heapdumps makes any that are missing itself; this fills the cache ahead.
.PHONY: heapdumps
heapdumps:
	$(GO) test -tags soak -count=1 -timeout 180m -v -run '^TestMakeHeapDumps$$' ./test/heapdumps/

# Issue 14 through bin/keeplog and a real sshd (test/soak TestBinaryResume): a real ~1 GiB JVM heap dump's upload
# SIGKILLed 10 times at random points, raw and with archiveCompression: zstd (one final file, its sha256 the
# manifest's storedSha256, zstd -d giving back the dump's sha256, at most the stored size + 10 chunks received), then
# a touch, rename and hard link of the archived dump adding 0 bytes on the server. About 1 minute with the dump
# cached (making it adds about half a minute to three, depending on the load); KEEPLOG_RESUME_SIZE, _KILLS,
# _BANDWIDTH and _VARIANTS change its shape, KEEPLOG_BIN the binary. Issue 15 through bin/keeplog and a real
# SeaweedFS S3 server: TestBinaryS3Resume (the same 10 SIGKILLs of a 1 GiB multipart upload), TestBinaryS3ServerOutage
# (the server SIGKILLed by its PID mid-part and down for 60 s, KEEPLOG_S3_OUTAGE; about 2.5 minutes) and
# TestBinaryS3WrongCredentials (a wrong secretAccessKey, then a missing bucket, then fixed; about 30 s). The SFTP
# Secret rotated as kubelet does (a refused key, then a new server host key refused, then the right key and
# knownHosts taken by the same PID): TestBinarySFTPRotatedCredentials, about 10 s. Two gauges read from the binary's
# /metrics: TestBinaryGOGCDefault (go_gc_gogc_percent 50 without GOGC, 100 with GOGC=100) and TestBinaryRetainedBytes
# (keeplog_gc_retained_bytes equal to du -s -B1 of the retained directories, and following a grown file), about 5 s.
.PHONY: resume-binary
resume-binary: build seaweedfs
	$(GO) test -tags soak -count=1 -timeout 30m -v -run '^(TestBinaryResume|TestBinaryS3Resume|TestBinaryS3ServerOutage|TestBinaryS3WrongCredentials|TestBinarySFTPRotatedCredentials|TestBinaryGOGCDefault|TestBinaryRetainedBytes|TestBinaryWalkedMarks)$$' ./test/soak/


# The chart e2e installs `make image`'s docker-archive for this machine's architecture (both are built by `make image`).
e2e: deps k8s otelcol seaweedfs build
	$(MAKE) image IMAGE_ARCHS=$$($(GO) env GOARCH)
	$(GO) test -tags e2e -p 1 -count=1 -timeout 40m -v ./test/e2e/...

# The stdout grace at full size: 50 pods x 10,000 lines (make e2e runs TestStdoutGrace at 10 x 2,000).
.PHONY: e2e-grace-full
e2e-grace-full: deps k8s otelcol build
	KEEPLOG_GRACE_PODS=50 KEEPLOG_GRACE_LINES=10000 $(GO) test -tags e2e -count=1 -timeout 30m -v -run TestStdoutGrace ./test/e2e/

# Upgrade and rollback through the chart: builds the previous release (framework.PreviousRelease) in a temporary git
# worktree, installs it, upgrades to this checkout mid-upload and rolls back (a few minutes; not part of `make test`).
.PHONY: e2e-upgrade
e2e-upgrade: deps k8s build
	$(MAKE) image IMAGE_ARCHS=$$($(GO) env GOARCH)
	KEEPLOG_E2E_UPGRADE=1 $(GO) test -tags e2e -count=1 -timeout 30m -v -run '^TestChartUpgradeRollback$$' ./test/e2e/

# Runs scenario 1 on a real single-node Kubernetes and shows what a user looks at.
demo: deps k8s build
	$(GO) run ./test/e2e/cmd/demo

# make test runs its phases one after another and prints each one's time (and the total) as it ends, so a slow CI
# run says where its minutes went.
TEST_PHASES := lint unit chart krew sanity soak-short resume-binary e2e
test: deps
	@start=$$(date +%s); for phase in $(TEST_PHASES); do \
		t=$$(date +%s); $(MAKE) --no-print-directory $$phase || { echo "make test: $$phase failed after $$(( $$(date +%s) - t )) s"; exit 1; }; \
		echo "make test: $$phase took $$(( $$(date +%s) - t )) s"; \
	done; echo "make test: all phases passed in $$(( $$(date +%s) - start )) s"

# The archiver against OpenSSH's sftp put with a 2 GiB file (KEEPLOG_BENCH_SIZE), the rate limit, one GC pass over
# 10,000 directories; then the upload end to end through bin/keeplog (test/soak BenchmarkBinaryUpload: published
# over CSI, a KEEPLOG_BINARY_BENCH_SIZE dump written, unpublished, until the final name is on the server),
# interleaved with sftp -b put and sftp -c aes128-gcm@openssh.com -b put, KEEPLOG_BINARY_BENCH_PAIRS rounds
# (KEEPLOG_BINARY_BENCH_DELAY=10ms: every client through a proxy delaying each direction by that much); wall
# and client-CPU ratios are printed, not asserted (a busy machine is slower). ./pkg/... includes
# BenchmarkS3UploadVsRclone: the archiver against rclone copyto to a SeaweedFS S3 server, interleaved, wall and CPU
# ratios printed. BenchmarkBinaryIdleEmpty: bin/keeplog's size and its RSS idle on an empty root.
KEEPLOG_BENCH_SIZE ?= 2G
KEEPLOG_BINARY_BENCH_SIZE ?= 1Gi
KEEPLOG_BINARY_BENCH_PAIRS ?= 3
KEEPLOG_HEAP_BENCH_COUNT ?= 25
KEEPLOG_HEAP_BENCH_BANDWIDTH ?= 25Mi
export KEEPLOG_BENCH_SIZE KEEPLOG_BINARY_BENCH_SIZE KEEPLOG_BINARY_BENCH_PAIRS KEEPLOG_HEAP_BENCH_COUNT KEEPLOG_HEAP_BENCH_BANDWIDTH
bench: build seaweedfs bench-scale
	$(GO) test -run '^$$' -bench . -benchtime 1x ./pkg/...
	$(GO) test -tags soak -run '^$$' -bench '^BenchmarkBinaryUpload$$' -benchtime 1x -timeout 60m ./test/soak/
	$(GO) test -tags soak -run '^$$' -bench '^BenchmarkBinaryIdleEmpty$$' -benchtime 1x -v ./test/soak/
	$(MAKE) --no-print-directory bench-heapdumps

# Issue 14's load shape (test/soak BenchmarkHeapDumps): KEEPLOG_HEAP_BENCH_COUNT real JVM heap dumps (25, 256 MiB -
# 1 GiB, made and cached as by make heapdumps), one pod each, finished at once, one upload at a time at
# KEEPLOG_HEAP_BENCH_BANDWIDTH (25Mi = sftp -l 204800): the seeds' recipe (sftp -l -b put, one after another), then
# bin/keeplog --archive-node-uploads=1 raw and with archiveCompression: zstd, until all are on the server; times,
# compression ratio, MB/s and CPU s/GB printed against the targets (0.35x and 1.05x the recipe), not asserted.
# About 11 + 11 + 3 minutes at the defaults (plus 10 to 50 minutes, with the load, to make the 25 dumps the first time).
.PHONY: bench-heapdumps
bench-heapdumps: build
	$(GO) test -tags soak -run '^$$' -bench '^BenchmarkHeapDumps$$' -benchtime 1x -timeout 240m ./test/soak/

# Issue 13's scale benchmark through bin/keeplog (test/soak BenchmarkBinaryScale): roots of KEEPLOG_SCALE_SIZES
# retained pod directories made through CSI (built once per size, cached in $(CACHE)/scale-root-v1/<size>, each run
# on a copy) plus KEEPLOG_SCALE_LIVE published volumes being written; keeplog killed and started again on each, with
# archiving off and on (KEEPLOG_SCALE_ARCHIVE); the first usage walk and GC pass, CPU over KEEPLOG_SCALE_IDLE, RSS,
# inotify watches and the growth per doubling are printed with the date and the load average, not asserted.
KEEPLOG_SCALE_SIZES ?= 2500,5000,10000,20000
KEEPLOG_SCALE_IDLE ?= 5m
KEEPLOG_SCALE_ARCHIVE ?= off,on
KEEPLOG_SCALE_LIVE ?= 100
export KEEPLOG_SCALE_SIZES KEEPLOG_SCALE_IDLE KEEPLOG_SCALE_ARCHIVE KEEPLOG_SCALE_LIVE
bench-scale: build
	@date -u '+bench-scale: %Y-%m-%d %H:%M UTC'
	$(GO) test -tags soak -run '^$$' -bench '^BenchmarkBinaryScale$$' -benchtime 1x -timeout 180m -v ./test/soak/

clean:
	rm -rf bin

# The node plugin's OCI image without a Docker daemon (docs/install.md: "Building the image"): for each of IMAGE_ARCHS the
# static binaries keeplog and keeplog-api (the `make build` flags, GOARCH cross-compiled) on Debian bookworm's util-linux mount and its
# libraries (hack/image-rootfs.sh: the Dockerfile's base contents, fetched with apt), written by hack/image
# (go-containerregistry) as bin/image/oci (OCI layout, one multi-platform index) and bin/image/keeplog-linux-ARCH.tar
# (docker-archives tagged $(IMAGE):$(IMAGE_TAG)), then read back and checked (ELF machine of each platform).
IMAGE ?= ghcr.io/keeplog/keeplog
IMAGE_TAG ?= $(VERSION)
IMAGE_ARCHS ?= amd64 arm64
IMAGE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
.PHONY: image
image:
	@set -e; plats=(); vplats=(); \
	for arch in $(IMAGE_ARCHS); do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -tags grpcnotrace -trimpath -ldflags "-s -w -X main.version=$(VERSION)" \
			-o bin/keeplog-linux-$$arch ./cmd/keeplog; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" \
			-o bin/keeplog-api-linux-$$arch ./cmd/keeplog-api; \
		hack/image-rootfs.sh $$arch bin/image/rootfs-$$arch; \
		plats+=(-platform linux/$$arch=bin/keeplog-linux-$$arch,bin/image/rootfs-$$arch,bin/keeplog-api-linux-$$arch); vplats+=(-platform linux/$$arch); \
	done; \
	$(GO) run ./hack/image write -out bin/image -ref $(IMAGE):$(IMAGE_TAG) -version $(VERSION) \
		-source-date-epoch $(IMAGE_EPOCH) "$${plats[@]}"; \
	$(GO) run ./hack/image verify -out bin/image -ref $(IMAGE):$(IMAGE_TAG) "$${vplats[@]}"; \
	echo "$(IMAGE):$(IMAGE_TAG)" >bin/image/ref

# make image's own output (both architectures, the real base) through the engines that load it, each started by the
# test on its own directories: docker load and run, ctr images import, crane push then docker pull, podman load and
# pull (hack/image TestEnginesLoadBothArchitectures; `make unit` runs it on the writer's output for keeplog on a
# stand-in base).
.PHONY: image-engines
image-engines: image
	KEEPLOG_IMAGE_DIR=$(CURDIR)/bin/image $(GO) test -count=1 -v -run '^TestEnginesLoadBothArchitectures$$' ./hack/image/

# The kubectl plugin's krew manifest (krew/keeplog.yaml) checked by krew's own validator, built from the Go module
# proxy into $(CACHE)/bin/krew-v0.4.3 (hack/build-krew-validator.sh); this platform's archive installed with it.
# hack/krew-release.sh VERSION=vX.Y.Z writes the manifest and archives for a release.
.PHONY: krew
krew:
	$(GO) test -count=1 ./test/krew/

# Helm built from the Go module proxy into $(CACHE)/bin/helm-<version> (hack/helm.sh; `make lint` needs it).
.PHONY: helm manifests verify-manifests chart
helm:
	@hack/helm.sh >/dev/null

# deploy/ is generated from charts/keeplog (kustomize: kubectl apply -k deploy/); verify-manifests (in lint) fails
# when they differ.
manifests:
	hack/manifests.sh

verify-manifests:
	hack/manifests.sh --verify

# Template tests of charts/keeplog: render with default and all values, RBAC, schema, every keeplog flag wired and
# accepted by bin/keeplog, csi-provisioner accepts its arguments.
chart: k8s build
	KEEPLOG_BIN=$(CURDIR)/bin/keeplog $(GO) test -count=1 ./test/chart/
