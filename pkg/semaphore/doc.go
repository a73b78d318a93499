// Package semaphore is a cluster-wide counting semaphore made of Kubernetes Leases (coordination.k8s.io/v1), for the
// few things keeplog must limit across nodes rather than on one:
//
//   - the upload slots (--archive-cluster-uploads, Leases keeplog-upload-0 …): every node's archiver uploads to the
//     same server, whose bandwidth and connection limits are the cluster's, so a mass eviction on fifty nodes must
//     not open fifty streams at once;
//   - the heap-dump slots (--dump-cluster-max, keeplog-dump-0 …, held until the dump is finished and archived):
//     dumping pauses a JVM and writes gigabytes, which a rolling failure must not do on every node together;
//   - the GC leader (pkg/gc RunElected, a single Lease of one slot, Config.Single): one node, not every node, cleans up
//     the PVs of vanished nodes.
//
// Why Leases: keeplog runs only as a DaemonSet and keeps no database or coordinator of its own
// (docs/architecture.md); the API server is the one thing all nodes share, Leases are the object Kubernetes made for
// this (kubelet heartbeats, leader election), cheap to renew and visible with kubectl. Why not client-go's
// leaderelection: it elects one holder, not N, and links client-go's full clientset and informers into the node
// plugin for its Lease lock.
//
// How: Slots Lease objects "<prefix>-0" .. "<prefix>-<Slots-1>" in one namespace. Acquiring creates a free slot's
// Lease or takes over one that is released or expired, with optimistic concurrency (resourceVersion), so two nodes
// never both win a slot; the holder renews it while it holds it and clears it on release. A holder that dies stops
// renewing, so its slot is free again after LeaseDuration: a crashed node never blocks the cluster. A holder that
// cannot renew (the API server refuses, or a request hangs behind a partition) gives the slot up before that: its
// context ends once no renewal has succeeded for LeaseDuration-RenewInterval (lostAfter), whether a renewal is still
// in flight or not, so that it stops before a contender may take the slot (renew.go). A contender judges expiry by
// the holder's RenewTime against its own clock, so the nodes' clocks must agree to well within LeaseDuration (NTP).
//
// Needs RBAC: get, create, update on leases in the namespace.
package semaphore
