package main

import (
	"strings"
	"testing"

	"github.com/keeplog/keeplog/pkg/store"
)

var (
	refA  = store.PodRef{Namespace: "ns1", Name: "api-7d9f-x2k4", UID: "0b7c8f6e-1111-4c3e-9d6a-000000000001"}
	refA2 = store.PodRef{Namespace: "ns1", Name: "worker-0", UID: "0b7c8f6e-3333-4c3e-9d6a-000000000003"}
	refB  = store.PodRef{Namespace: "ns2", Name: "web-0", UID: "0b7c8f6e-2222-4c3e-9d6a-000000000002"}
)

const podYAMLOwnedByRS = `metadata:
  name: api-7d9f-x2k4
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: api-7d9f, uid: x}
`

const statusOOM = `apiVersion: keeplog.csi.io/v1
kind: EndState
containers:
- name: app
  state: terminated
  terminated: {exitCode: 137, reason: OOMKilled}
`

const archiveStatus = `{"namespace":"ns1","pod":"api-7d9f-x2k4","updated":"2026-12-01T10:05:00Z","files":[
 {"path":"app/dumps/heap.hprof","state":"done","remote":"sftp://archive/ns1/api-7d9f-x2k4/app/dumps/heap.hprof"},
 {"path":"app/dumps/heap2.hprof","state":"done","sameAs":"app/dumps/heap.hprof"},
 {"path":"app/core","state":"failed","error":"connection refused"},
 {"path":"app/late.hprof","state":"settling"}]}
`

// fixture is the cluster every verb's test reads, all on node-1:
//   - alice's refA (ns1): container logs of two runs and a sidecar, gc.log, a 400000-byte heap dump, the pod's
//     metadata (owned by ReplicaSet api-7d9f, OOMKilled) and an archive status file (2 done, 1 failed, 1 settling);
//   - alice's refA2 (ns1): completed, a log file, no archive status file;
//   - bob's refB (ns2).
//
// It returns refA's directory on the node and its files (path -> content).
func fixture(t *testing.T) (*cluster, string, map[string]string) {
	c := newCluster(t)
	files := map[string]string{
		"app/gc.log":                   "gc pause 12ms\n",
		"app/dumps/heap.hprof":         strings.Repeat("heap", 100000),
		".keeplog/pod.yaml":            podYAMLOwnedByRS,
		".keeplog/status.yaml":         statusOOM,
		".keeplog/pod.txt":             "Pod ns1/api-7d9f-x2k4\nOwner: Deployment api\n",
		".keeplog/ended.txt":           "app: OOMKilled (exit 137)\n",
		".keeplog/archive-status.json": archiveStatus,
		".keeplog/logs/app/0.log":      "2026-12-01T10:00:00.000000000Z stdout F first run\n",
		".keeplog/logs/app/1.log":      "2026-12-01T10:01:00.000000000Z stdout F second run\n2026-12-01T10:01:01.000000000Z stderr F oops\n",
		".keeplog/logs/sidecar/0.log":  "2026-12-01T10:00:00.000000000Z stdout F side\n",
	}
	dir := c.pod("v1:n:a", refA, files)
	c.pod("v1:n:a2", refA2, map[string]string{"w.log": "w\n",
		".keeplog/status.yaml": "containers:\n- name: w\n  terminated: {reason: Completed}\n"})
	c.pod("v1:n:b", refB, map[string]string{"app/x.log": "b\n"})
	return c, dir, files
}
