package main

import (
	"flag"

	"github.com/keeplog/keeplog/pkg/policy"
)

// GCOptions configure retention and garbage collection (pkg/gc).
type GCOptions struct{}

// AddFlags registers the GC flags.
func (o *GCOptions) AddFlags(fs *flag.FlagSet) {}

// Validate checks the GC flags.
func (o *GCOptions) Validate() error { return nil }

// policyDefaults are the retention defaults pods and StorageClasses may override.
func (o *GCOptions) policyDefaults() policy.Defaults { return policy.Defaults{} }
