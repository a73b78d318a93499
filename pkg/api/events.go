package api

// Event reasons on pods (and the archive's on the pod whose file it was).
const (
	// ReasonInvalidKeeplogSetting means a keeplog.csi.io/* annotation of the pod is malformed or unknown; it is ignored.
	ReasonInvalidKeeplogSetting = "InvalidKeeplogSetting"

	// ReasonArchived means a file is uploaded and verified (or the server had the same content).
	ReasonArchived = "Archived"
	// ReasonArchiveRetrying means an upload attempt failed; it is retried.
	ReasonArchiveRetrying = "ArchiveRetrying"
	// ReasonArchiveFailed means a file cannot be archived (or deleted after its upload).
	ReasonArchiveFailed = "ArchiveFailed"
	// ReasonArchiveSkipped means a file is not archived by policy (firstOnly).
	ReasonArchiveSkipped = "ArchiveSkipped"
	// ReasonArchiveRejected means a matching name is a symlink or not a regular file; it is never read.
	ReasonArchiveRejected = "ArchiveRejected"
	// ReasonArchiveUploadRestarted means an interrupted upload starts over because the server did not hold its prefix.
	ReasonArchiveUploadRestarted = "ArchiveUploadRestarted"
	// ReasonArchiveSparse means a sparse file is skipped or uploaded raw (archiveSparse).
	ReasonArchiveSparse = "ArchiveSparse"

	// ReasonDumpTriggered means the pod was asked for a heap dump.
	ReasonDumpTriggered = "DumpTriggered"
	// ReasonDumpFinished means the dump file is written (and archived, with an archiver).
	ReasonDumpFinished = "DumpFinished"
	// ReasonDumpSkipped means a dump was due but skipped (firstOnly, cooldown, low disk, no slot).
	ReasonDumpSkipped = "DumpSkipped"
	// ReasonDumpFailed means the dump request failed.
	ReasonDumpFailed = "DumpFailed"
	// ReasonDumpTimedOut means no finished dump file within --dump-timeout.
	ReasonDumpTimedOut = "DumpTimedOut"
	// ReasonDumpRearmed means firstOnly was re-armed (dump-rearm).
	ReasonDumpRearmed = "DumpRearmed"
	// ReasonDumpThresholdOff means the threshold cannot apply (the container has no memory limit).
	ReasonDumpThresholdOff = "DumpThresholdOff"
	// ReasonInvalidDumpSetting means a dump annotation is malformed or unknown.
	ReasonInvalidDumpSetting = "InvalidDumpSetting"
	// ReasonDumpNotPossible means the pod asks for heap dumps but has no keeplog volume on this node to keep them.
	ReasonDumpNotPossible = "DumpNotPossible"

	// ReasonVolumeOverLimit means the volume uses more than its limit.
	ReasonVolumeOverLimit = "VolumeOverLimit"
	// ReasonVolumeBlocked means the volume's directories are blocked from growing (limitAction block).
	ReasonVolumeBlocked = "VolumeBlocked"
	// ReasonVolumeBackUnderLimit means the volume is back under its limit.
	ReasonVolumeBackUnderLimit = "VolumeBackUnderLimit"
	// ReasonVolumeLimitEnforcementFailed means blocking or unblocking a pod directory failed.
	ReasonVolumeLimitEnforcementFailed = "VolumeLimitEnforcementFailed"

	// ReasonLogDirectoryDeleted means the garbage collector deleted the pod's directory.
	ReasonLogDirectoryDeleted = "LogDirectoryDeleted"
	// ReasonLogDirectoryHoldsMount means the directory is kept because something is mounted at or below it.
	ReasonLogDirectoryHoldsMount = "LogDirectoryHoldsMount"
)
