package main

import (
	"context"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/keeplog/keeplog/pkg/retrievalapi"
)

// Where keeplog describes the pod inside its directory (pkg/podinfo's layout, a documented contract).
const (
	metaDir    = ".keeplog/"
	podYAML    = metaDir + "pod.yaml"
	podText    = metaDir + "pod.txt"
	statusYAML = metaDir + "status.yaml"
	endedText  = metaDir + "ended.txt"
	stdoutDir  = metaDir + "logs/"
)

// podFacts are what ls --owner/--reason/-o wide need from the pod's metadata files (and, for -o wide, its size).
type podFacts struct {
	owners  []ownerRef
	reasons []string
	size    int64
}

type ownerRef struct{ Kind, Name string }

// readFacts reads pod.yaml's owner references and status.yaml's termination reasons.
func readFacts(ctx context.Context, c *client, p *retrievalapi.RetainedPod) (podFacts, error) {
	var f podFacts
	py, err := c.readSmall(ctx, p, podYAML)
	if err != nil {
		return f, err
	}
	var pod struct {
		Metadata struct {
			OwnerReferences []ownerRef `json:"ownerReferences"`
		} `json:"metadata"`
	}
	if yaml.Unmarshal([]byte(py), &pod) == nil {
		f.owners = pod.Metadata.OwnerReferences
	}
	sy, err := c.readSmall(ctx, p, statusYAML)
	if err != nil {
		return f, err
	}
	type term struct {
		Reason string `json:"reason"`
	}
	var st struct {
		Reason     string `json:"reason"`
		Containers []struct {
			Terminated      *term `json:"terminated"`
			LastTermination *term `json:"lastTermination"`
		} `json:"containers"`
	}
	if yaml.Unmarshal([]byte(sy), &st) == nil {
		add := func(r string) {
			if r != "" && !contains(f.reasons, r) {
				f.reasons = append(f.reasons, r)
			}
		}
		add(st.Reason)
		for _, c := range st.Containers {
			for _, t := range []*term{c.Terminated, c.LastTermination} {
				if t != nil {
					add(t.Reason)
				}
			}
		}
	}
	return f, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (f podFacts) owner() string {
	if len(f.owners) == 0 {
		return ""
	}
	return strings.ToLower(f.owners[0].Kind) + "/" + f.owners[0].Name
}

// kinds maps kubectl's short names to owner kinds.
var kinds = map[string]string{"deploy": "deployment", "deployment": "deployment", "sts": "statefulset",
	"statefulset": "statefulset", "rs": "replicaset", "replicaset": "replicaset", "job": "job", "ds": "daemonset",
	"daemonset": "daemonset", "cronjob": "cronjob", "cj": "cronjob"}

// ownedBy: kind/name is an owner of the pod; a Deployment owns its ReplicaSets' pods (<deployment>-<hash>), a
// CronJob its Jobs' (<cronjob>-<n>).
func (f podFacts) ownedBy(want string) bool {
	k, name, _ := strings.Cut(want, "/")
	kind := kinds[strings.ToLower(k)]
	for _, o := range f.owners {
		ok := strings.ToLower(o.Kind)
		switch {
		case ok == kind && o.Name == name:
			return true
		case kind == "deployment" && ok == "replicaset" && strings.HasPrefix(o.Name, name+"-"):
			return true
		case kind == "cronjob" && ok == "job" && strings.HasPrefix(o.Name, name+"-"):
			return true
		}
	}
	return false
}

func (f podFacts) endedWith(reason string) bool {
	for _, r := range f.reasons {
		if strings.EqualFold(r, reason) {
			return true
		}
	}
	return false
}
