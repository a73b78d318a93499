package api

// Metric names (Prometheus, on --http-address /metrics).
const (
	// MetricArchiveStatusWritesTotal is archive status files written (only when a pod directory's archive state changed).
	MetricArchiveStatusWritesTotal = "keeplog_archive_status_writes_total"
	// MetricArchiveWatchOverflowsTotal is times the file watch lost events (kernel queue overflow) and the archiver rescanned every pod directory.
	MetricArchiveWatchOverflowsTotal = "keeplog_archive_watch_overflows_total"
	// MetricArchiverQueueDepth is finished files waiting to be uploaded or being uploaded on this node.
	MetricArchiverQueueDepth = "keeplog_archiver_queue_depth"
	// MetricArchiverSettlingFiles is files matching the archive patterns that are not known to be finished yet.
	MetricArchiverSettlingFiles = "keeplog_archiver_settling_files"
	// MetricArchiverUnwalkedDirectoriesTotal is directories inside pod directories the archiver did not enter (a mount, or too deep); their pod directories are never archived, so the GC keeps them.
	MetricArchiverUnwalkedDirectoriesTotal = "keeplog_archiver_unwalked_directories_total"
	// MetricArchiverUploadDurationSeconds is duration of successful uploads, from the first byte to the verified rename.
	MetricArchiverUploadDurationSeconds = "keeplog_archiver_upload_duration_seconds"
	// MetricArchiverUploadResumesTotal is interrupted uploads taken up again: continued after the prefix the server acknowledged, or restarted from 0 because the server did not hold it.
	MetricArchiverUploadResumesTotal = "keeplog_archiver_upload_resumes_total"
	// MetricArchiverUploadedBytesTotal is bytes sent to the archive server, as stored (compressed when compressed), including attempts that failed.
	MetricArchiverUploadedBytesTotal = "keeplog_archiver_uploaded_bytes_total"
	// MetricArchiverUploadsTotal is upload attempts by result (success, retry, failed, skipped).
	MetricArchiverUploadsTotal = "keeplog_archiver_uploads_total"
	// MetricCSIOperationDurationSeconds is time to serve a CSI call, by method.
	MetricCSIOperationDurationSeconds = "keeplog_csi_operation_duration_seconds"
	// MetricCSIOperationsTotal is cSI calls served, by method and gRPC code.
	MetricCSIOperationsTotal = "keeplog_csi_operations_total"
	// MetricDumpDecisionsTotal is heap dump decisions on this node: triggered, finished, failed, timed_out and skipped_* (why).
	MetricDumpDecisionsTotal = "keeplog_dump_decisions_total"
	// MetricDumpInProgress is heap dumps of this node's pods being taken (from the request until the file is finished and archived).
	MetricDumpInProgress = "keeplog_dump_in_progress"
	// MetricDumpWatchedContainers is containers on this node whose memory is watched for a dump threshold.
	MetricDumpWatchedContainers = "keeplog_dump_watched_containers"
	// MetricDumpWebhookAlertsTotal is alerts received by the Alertmanager receiver by what was done: requested (a dump), unchanged, resolved, no-pod, not-found, not-opted-in, error.
	MetricDumpWebhookAlertsTotal = "keeplog_dump_webhook_alerts_total"
	// MetricDumpWebhookRequestsTotal is requests to the Alertmanager receiver by HTTP status answered (401: bad token, 400: bad payload, 500: an API error Alertmanager retries).
	MetricDumpWebhookRequestsTotal = "keeplog_dump_webhook_requests_total"
	// MetricGCDeletionsTotal is pod directories deleted by the garbage collector, by reason (retention, disk_pressure, inode_pressure).
	MetricGCDeletionsTotal = "keeplog_gc_deletions_total"
	// MetricGCDiskUsedRatio is share of the root's filesystem in use (0..1, as df computes it) after the last pass.
	MetricGCDiskUsedRatio = "keeplog_gc_disk_used_ratio"
	// MetricGCInodesUsedRatio is share of the root filesystem's inodes in use (0..1, as df -i computes it) after the last pass.
	MetricGCInodesUsedRatio = "keeplog_gc_inodes_used_ratio"
	// MetricGCOldestRetainedSeconds is age of the oldest retained pod directory since its retention clock started (0 when none).
	MetricGCOldestRetainedSeconds = "keeplog_gc_oldest_retained_seconds"
	// MetricGCPVCleanupsTotal is pVs the garbage collector let go: released (reclaim policy set to Delete), node_gone (deleted by the leader).
	MetricGCPVCleanupsTotal = "keeplog_gc_pv_cleanups_total"
	// MetricGCRetainedBytes is bytes allocated by the retained pod directories, as the usage tracker counts them (0 until its first walk has ended).
	MetricGCRetainedBytes = "keeplog_gc_retained_bytes"
	// MetricGCRetainedDirectories is unpublished pod directories kept on this node (retention not expired, archive pending, or kept by disk-pressure order).
	MetricGCRetainedDirectories = "keeplog_gc_retained_directories"
	// MetricLoopLastProgressSeconds is seconds since a long-running loop of keeplog last made progress, by loop.
	MetricLoopLastProgressSeconds = "keeplog_loop_last_progress_seconds"
	// MetricRootSharesFilesystem is 1 when keeplog's root is on the same filesystem as kubelet's root, its pod logs or the runtime's directory (label with).
	MetricRootSharesFilesystem = "keeplog_root_shares_filesystem"
	// MetricUsageEnforceErrorsTotal is failed attempts to block or unblock a pod directory.
	MetricUsageEnforceErrorsTotal = "keeplog_usage_enforce_errors_total"
	// MetricUsageEventOverflowsTotal is times file events were lost (inotify queue overflow) and everything was walked again.
	MetricUsageEventOverflowsTotal = "keeplog_usage_event_overflows_total"
	// MetricUsageWalkDurationSeconds is how long measuring one pod directory took.
	MetricUsageWalkDurationSeconds = "keeplog_usage_walk_duration_seconds"
	// MetricUsageWalksTotal is walks: the full one at start or after lost events, and the periodic ones (every published pod directory and a sixtieth of the retained ones).
	MetricUsageWalksTotal = "keeplog_usage_walks_total"
	// MetricVolumeBlockedDirectories is pod directories of the volume whose writes are blocked now (limitAction block).
	MetricVolumeBlockedDirectories = "keeplog_volume_blocked_directories"
	// MetricVolumeLimitBytes is the volume's limit: its requested capacity (or the size attribute of a CSI inline volume). Absent when it has none.
	MetricVolumeLimitBytes = "keeplog_volume_limit_bytes"
	// MetricVolumeLimitExceededTotal is times the volume went over its limit.
	MetricVolumeLimitExceededTotal = "keeplog_volume_limit_exceeded_total"
	// MetricVolumeOverLimit is 1 while the volume uses more than its limit.
	MetricVolumeOverLimit = "keeplog_volume_over_limit"
	// MetricVolumeUsedBytes is bytes allocated by the volume's pod directories (as du counts them).
	MetricVolumeUsedBytes = "keeplog_volume_used_bytes"
	// MetricVolumeUsedInodes is files and directories in the volume's pod directories.
	MetricVolumeUsedInodes = "keeplog_volume_used_inodes"
)
