//go:build soak

// Package soak runs the shipped bin/keeplog against a real OpenSSH sshd for minutes, as a node runs it (pods
// published and unpublished over CSI, dumps at random depths and sizes, retention expiring, keeplog SIGKILLed and
// restarted, sshd restarted once), and then checks the archive path's promises through what the server holds and
// what /proc, /healthz and /metrics say. KEEPLOG_SOAK=short (make soak-short, part of make test) runs about two
// minutes; KEEPLOG_SOAK=long (make soak) about ten.
package soak

import (
	"os"
	"time"
)

// plan is the shape of one soak run.
type plan struct {
	name string
	// work is how long pods come and go; settle the longest wait afterwards for every unpublished directory to be
	// archived and deleted; idle the window at the end in which keeplog must do nothing.
	work, settle, idle time.Duration
	workers            int   // pods under way at once
	kills              int   // SIGKILLs of keeplog during work (sshd is restarted once besides)
	maxSize            int64 // dumps are 1 KiB .. maxSize, log-uniform
	bigSize            int64 // every bigEvery-th dump is this large instead
	bigEvery           int
	retainFor          time.Duration
	// stallBound is the oldest progress (keeplog_loop_last_progress_seconds) a loop may show; generous, since
	// /healthz applies keeplog's own bounds.
	stallBound time.Duration
	// idleCPU is the most CPU keeplog may use while idle, as a fraction of one core.
	idleCPU float64
}

// planFromEnv picks the plan by KEEPLOG_SOAK (short unless "long").
func planFromEnv() plan {
	short := plan{name: "short", work: 60 * time.Second, settle: 90 * time.Second, idle: 30 * time.Second,
		workers: 3, kills: 2, maxSize: 64 << 20, bigSize: 96 << 20, bigEvery: 30, retainFor: 10 * time.Second,
		stallBound: 2 * time.Minute, idleCPU: 0.01}
	if os.Getenv("KEEPLOG_SOAK") != "long" {
		return short
	}
	long := short
	long.name, long.work, long.settle, long.idle = "long", 7*time.Minute, 3*time.Minute, 60*time.Second
	long.workers, long.kills, long.bigSize, long.bigEvery = 4, 4, 192<<20, 25
	return long
}
