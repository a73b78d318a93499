// Package krew checks the kubectl plugin's krew manifest (krew/keeplog.yaml, written by hack/krew-release.sh)
// with krew's own validator, sigs.k8s.io/krew/cmd/validate-krew-manifest v0.4.3 built from the Go module proxy by
// hack/build-krew-validator.sh and cached in $KEEPLOG_CACHE/bin.
package krew
