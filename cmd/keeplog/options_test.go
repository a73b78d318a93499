package main

import (
	"flag"
	"strings"
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	parse := func(args ...string) *Options {
		o := &Options{}
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return o
	}
	if err := parse("--node-id=node-1").Validate(); err != nil {
		t.Fatalf("defaults with a node ID: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--node-id"},
		{[]string{"--node-id=Node_1"}, "--node-id"},
		{[]string{"--node-id=n", "--endpoint=tcp://1.2.3.4:5"}, "--endpoint"},
		{[]string{"--node-id=n", "--root=/"}, "--root"},
		{[]string{"--node-id=n", "--root=var/log"}, "--root"},
		{[]string{"--node-id=n", "--root=/var/../log"}, "--root"},
		{[]string{"--node-id=n", "--kubelet-registration-dir=rel"}, "--kubelet-registration-dir"},
		{[]string{"--node-id=n", "--kubelet-endpoint=rel.sock"}, "--kubelet-endpoint"},
		{[]string{"--node-id=n", "--driver-name="}, "--driver-name"},
		{[]string{"--node-id=n", "--shutdown-grace=-1s"}, "--shutdown-grace"},
	} {
		err := parse(tc.args...).Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
}
