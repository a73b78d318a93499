// Package binary drives the shipped bin/keeplog the way a node runs it, for the soak, the end-to-end upload bench
// and the two-process test: keeplog started as a process (temp root, CSI unix socket, /healthz and /metrics on a
// loopback port, an SFTP archive target), a CSI client that calls it as kubelet and csi-provisioner would, SIGKILL
// and restart by PID, its CPU seconds and RSS read from /proc, /metrics scraped and /healthz polled, and what an
// OpenSSH server received read back from the server's disk.
//
// Unit tests exercise keeplog's packages; only a process started from the binary shows what a user gets (flags
// wired, loops started, restarts recovering from disk). Nothing here is a test by itself: the callers under
// test/soak (build tag soak) and test/e2e (build tag e2e) decide what to assert. Every process started here is
// stopped by its PID (test/e2e/lab's Process), and every mount a caller publishes is unpublished through CSI.
package binary
