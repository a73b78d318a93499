package main

import (
	"flag"
	"strings"
	"testing"
)

func TestDumpOptions(t *testing.T) {
	parse := func(args ...string) error {
		var o DumpOptions
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			return err
		}
		return o.Validate()
	}
	if err := parse(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cgroup-root=sys/fs/cgroup"}, `--cgroup-root "sys/fs/cgroup" must be absolute`},
		{[]string{"--dump-poll-interval=0s"}, "--dump-poll-interval 0s must be positive"},
		{[]string{"--dump-cooldown=-1m"}, "--dump-cooldown -1m0s must be positive"},
		{[]string{"--dump-quiet-period=10m"}, "--dump-quiet-period 10m0s must be shorter than --dump-timeout 10m0s"},
		{[]string{"--dump-cluster-max=-1"}, "--dump-cluster-max -1 must not be negative"},
		{[]string{"--dump-lease-duration=1s"}, "--dump-lease-duration 1s must be at least 3s"},
		{[]string{"--dump-host-network-address=localhost"}, `--dump-host-network-address "localhost" must be an IP address`},
		{[]string{"--dump-webhook-token-file=token"}, `--dump-webhook-token-file "token" must be absolute`},
	} {
		err := parse(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
