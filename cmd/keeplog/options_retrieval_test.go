package main

import (
	"flag"
	"strings"
	"testing"
)

func TestRetrievalOptionsValidate(t *testing.T) {
	parse := func(args ...string) *RetrievalOptions {
		o := &RetrievalOptions{}
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return o
	}
	for _, args := range [][]string{
		nil, // off
		{"--retrieval-address=127.0.0.1:9809"},
		{"--retrieval-address=:9809", "--retrieval-tls-cert-file=/c.pem", "--retrieval-tls-key-file=/k.pem"},
	} {
		if err := parse(args...).Validate(); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	if o := parse("--retrieval-bandwidth=10Mi"); o.Validate() != nil || o.bytesPerSecond != 10<<20 {
		t.Errorf("--retrieval-bandwidth=10Mi: %d bytes/s", o.bytesPerSecond)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--retrieval-address=:9809"}, "not a loopback address"},
		{[]string{"--retrieval-address=10.0.0.1:9809"}, "not a loopback address"},
		{[]string{"--retrieval-tls-cert-file=/c.pem"}, "go together"},
		{[]string{"--retrieval-bandwidth=0"}, "--retrieval-bandwidth"},
		{[]string{"--retrieval-bandwidth=fast"}, "--retrieval-bandwidth"},
		{[]string{"--retrieval-max-streams=0"}, "--retrieval-max-streams"},
	} {
		if err := parse(tc.args...).Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one saying %q", tc.args, err, tc.want)
		}
	}
}
