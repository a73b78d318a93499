// Package archiver uploads finished dumps from keeplog's pod directories to an archive target (an SFTP server, or
// an S3 bucket: a Remote): exactly once (a durable journal), verified (size and sha256, with a manifest), within a
// per-node bandwidth and concurrency limit and a cluster-wide concurrency limit (a Semaphore).
//
// The flow: watch (inotify through internal/fswatch + periodic rescans) → settle (no writer, stable for a quiet
// period, or the pod unpublished) → journal → upload (temporary name, verify, manifest, rename) → journal → status
// file, event, metrics.
//
// Where each step lives: archiver.go holds the Archiver, its Deps and the main loop (Run); publish.go what the node
// server tells it (a volume published or unpublished) and how the loop is woken; watch.go what a watch event or a
// walk finds, rescan.go the periodic walks and the pod directories that are gone, retained.go the unpublished ones
// (not watched, walked on a schedule); settle.go and writerscan.go when a file is finished, finish.go its journal
// entry; worker.go an upload attempt and its retries (retryevents.go: their Events), upload.go and the remotes
// (sftpremote.go, s3remote.go) the transfer itself, afterupload.go what follows it; journal.go and transitions.go
// the durable record, status.go the pod's status file.
package archiver
