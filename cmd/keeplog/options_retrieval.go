package main

import (
	"errors"
	"flag"
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/keeplog/keeplog/pkg/retrieval"
)

// RetrievalOptions configure the read endpoint for retained pod directories (pkg/retrieval, docs/retrieval.md).
type RetrievalOptions struct {
	Address     string
	TLSCertFile string
	TLSKeyFile  string
	Bandwidth   string
	MaxStreams  int

	bytesPerSecond int64 // parsed from Bandwidth by Validate
}

// AddFlags registers the retrieval flags.
func (o *RetrievalOptions) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Address, "retrieval-address", "", "address of the read endpoint for retained pod directories ("+retrieval.PathPrefix+"/v1/..., for keeplog-api); every request needs a bearer token allowed to get the non-resource URL (TokenReview + SubjectAccessReview). HTTPS with --retrieval-tls-cert-file/--retrieval-tls-key-file; plain HTTP only on a loopback address. Empty (the default): off, no port opened")
	fs.StringVar(&o.TLSCertFile, "retrieval-tls-cert-file", "", "serving certificate (PEM) of --retrieval-address")
	fs.StringVar(&o.TLSKeyFile, "retrieval-tls-key-file", "", "private key (PEM) of --retrieval-tls-cert-file")
	fs.StringVar(&o.Bandwidth, "retrieval-bandwidth", "50Mi", "bytes per second all downloads from this node may read together, as a quantity")
	fs.IntVar(&o.MaxStreams, "retrieval-max-streams", retrieval.DefaultMaxStreams, "files streamed from this node at once; more are answered 429")
}

// Validate checks the retrieval flags: a token must never travel in clear on the node's network.
func (o *RetrievalOptions) Validate() error {
	var errs []error
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		errs = append(errs, errors.New("--retrieval-tls-cert-file and --retrieval-tls-key-file go together"))
	}
	if o.Address != "" && o.TLSCertFile == "" && !isLoopbackAddress(o.Address) {
		errs = append(errs, fmt.Errorf("--retrieval-address %q is not a loopback address: it needs --retrieval-tls-cert-file and --retrieval-tls-key-file (bearer tokens must not travel in clear)", o.Address))
	}
	if q, err := resource.ParseQuantity(o.Bandwidth); err != nil {
		errs = append(errs, fmt.Errorf("--retrieval-bandwidth %q is not a quantity such as 50Mi: %v", o.Bandwidth, err))
	} else if v, ok := q.AsInt64(); !ok || v <= 0 {
		errs = append(errs, fmt.Errorf("--retrieval-bandwidth %q must be a whole, positive number of bytes per second", o.Bandwidth))
	} else {
		o.bytesPerSecond = v
	}
	if o.MaxStreams < 1 {
		errs = append(errs, fmt.Errorf("--retrieval-max-streams %d must be at least 1", o.MaxStreams))
	}
	return errors.Join(errs...)
}
