package main

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestOptions(t *testing.T) {
	parse := func(args ...string) *Options {
		o := newOptions()
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return o
	}
	if err := parse("--node-endpoint=n1=https://10.0.0.1:9809", "--node-endpoint=n2=http://127.0.0.1:9809").Validate(); err != nil {
		t.Errorf("valid endpoints: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--node-endpoint=n1=http://10.0.0.1:9809"}, "loopback"}, // a token in clear on the network
		{[]string{"--node-endpoint=https://10.0.0.1:9809"}, "<node>="},
		{[]string{"--node-endpoint=n1="}, "<node>="},
		{[]string{"--node-selector=a in (b"}, "--node-selector"},
		{[]string{"--node-token-file="}, "--node-token-file"},
	} {
		if err := parse(tc.args...).Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error about %q", tc.args, err, tc.want)
		}
	}
}
