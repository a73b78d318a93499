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
	o := parse("--node-id=node-1", "--archive-bandwidth=25Mi", "--archive-target=/etc/keeplog/archive")
	if err := o.Validate(); err != nil || o.Archive.bytesPerSecond != 25<<20 {
		t.Fatalf("--archive-bandwidth=25Mi: %d bytes/s (%v), want %d", o.Archive.bytesPerSecond, err, 25<<20)
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
		{[]string{"--node-id=n", "--namespace=Kube_System"}, "--namespace"},
		{[]string{"--node-id=n", "--log-format=xml"}, "--log-format"},
		{[]string{"--node-id=n", "--archive-target=secret"}, "--archive-target"},
		{[]string{"--node-id=n", "--archive-bandwidth=fast"}, "--archive-bandwidth"},
		{[]string{"--node-id=n", "--archive-bandwidth=-1Mi"}, "--archive-bandwidth"},
		{[]string{"--node-id=n", "--archive-bandwidth=0.5"}, "--archive-bandwidth"},
		{[]string{"--node-id=n", "--archive-node-uploads=0"}, "--archive-node-uploads"},
		{[]string{"--node-id=n", "--archive-cluster-uploads=-1"}, "--archive-cluster-uploads"},
		{[]string{"--node-id=n", "--archive-quiet-period=0s"}, "--archive-quiet-period"},
		{[]string{"--node-id=n", "--archive-lease-duration=1s"}, "--archive-lease-duration"},
	} {
		err := parse(tc.args...).Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
}
