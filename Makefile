# keeplog — see README.md. Every target works as root on a fresh Debian 12 machine with Go installed.
SHELL := /bin/bash
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO ?= go
CACHE ?= $(HOME)/.cache/keeplog
export KEEPLOG_CACHE := $(CACHE)

.PHONY: all build deps k8s lint unit sanity sanity-binary soak soak-short e2e demo test bench bench-scale clean

all: build

# -tags grpcnotrace: gRPC without golang.org/x/net/trace, whose init registers /debug/requests on
# http.DefaultServeMux (keeplog never serves it) and links html/template; text/template's calls of methods by name
# make the linker keep every exported method of every type, 11 MB of the binary (the Dockerfile builds the same way;
# test/chart checks both).
build:
	CGO_ENABLED=0 $(GO) build -tags grpcnotrace -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/keeplog ./cmd/keeplog

# Debian packages the tests need (etcd, containerd, runc, CNI plugins, busybox, sshd, ...).
deps:
	hack/install-deps.sh

# Kubernetes v1.34.4 and csi-provisioner v6.3.0 built from the Go module proxy, cached in $(CACHE).
k8s:
	hack/build-k8s.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/...
	$(GO) vet -tags soak ./test/soak/... ./test/binary/...
	hack/manifests.sh --verify

unit:
	$(GO) test -race -count=1 ./pkg/... ./cmd/... ./internal/...

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

e2e: deps k8s build
	$(GO) test -tags e2e -p 1 -count=1 -timeout 40m -v ./test/e2e/...

# Runs scenario 1 on a real single-node Kubernetes and shows what a user looks at.
demo: deps k8s build
	$(GO) run ./test/e2e/cmd/demo

test: deps lint unit chart sanity soak-short e2e

# The archiver against OpenSSH's sftp put with a 2 GiB file (KEEPLOG_BENCH_SIZE), the rate limit, one GC pass over
# 10,000 directories; then the upload end to end through bin/keeplog (test/soak BenchmarkBinaryUpload: published
# over CSI, a KEEPLOG_BINARY_BENCH_SIZE dump written, unpublished, until the final name is on the server),
# interleaved with sftp -b put and sftp -c aes128-gcm@openssh.com -b put, KEEPLOG_BINARY_BENCH_PAIRS rounds; wall
# and client-CPU ratios are printed, not asserted (a busy machine is slower).
KEEPLOG_BENCH_SIZE ?= 2G
KEEPLOG_BINARY_BENCH_SIZE ?= 1Gi
KEEPLOG_BINARY_BENCH_PAIRS ?= 3
export KEEPLOG_BENCH_SIZE KEEPLOG_BINARY_BENCH_SIZE KEEPLOG_BINARY_BENCH_PAIRS
bench: build bench-scale
	$(GO) test -run '^$$' -bench . -benchtime 1x ./pkg/...
	$(GO) test -tags soak -run '^$$' -bench '^BenchmarkBinaryUpload$$' -benchtime 1x -timeout 60m ./test/soak/

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
