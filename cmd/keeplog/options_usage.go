package main

import "flag"

// UsageOptions configure usage accounting and volume limits (pkg/usage).
type UsageOptions struct{}

// AddFlags registers the usage flags.
func (o *UsageOptions) AddFlags(fs *flag.FlagSet) {}

// Validate checks the usage flags.
func (o *UsageOptions) Validate() error { return nil }
