package api

// StorageClass parameters (and CSI inline volume attributes). pkg/policy parses them.
const (
	// ParamArchive is "true" (default) or "false": upload matching files.
	ParamArchive = "archive"
	// ParamArchivePatterns is comma-separated globs; default *.hprof,core,core.*,hs_err_pid*.log.
	ParamArchivePatterns = "archivePatterns"
	// ParamDeleteAfterUpload is "true": delete the local file once its upload is verified.
	ParamDeleteAfterUpload = "deleteAfterUpload"
	// ParamFirstOnly is "true": upload only the first finished dump of each container.
	ParamFirstOnly = "firstOnly"
	// ParamRetainFor is a duration (e.g. 72h) the directory is kept after the pod.
	ParamRetainFor = "retainFor"
	// ParamLimitAction is "warn" (default) or "block" when the volume passes its size.
	ParamLimitAction = "limitAction"
	// ParamSize is a quantity (e.g. 1Gi): the size of a CSI inline volume, which has no request.
	ParamSize = "size"
	// ParamArchiveCompression is "none" (default) or "zstd", optionally with a level: "zstd:3".
	ParamArchiveCompression = "archiveCompression"
	// ParamArchiveCompressionLevel is the zstd level, 1-22 (default 3).
	ParamArchiveCompressionLevel = "archiveCompressionLevel"
	// ParamArchiveSparse is what happens to a sparse file when it is not compressed anyway: "compress"
	// (default), "skip" or "upload" (raw, holes and all).
	ParamArchiveSparse = "archiveSparse"
)

// AnnotationPrefix starts every annotation and label keeplog reads or writes.
const AnnotationPrefix = "keeplog.csi.io/"

// Pod annotations that override the StorageClass parameters for one pod (pkg/policy).
const (
	// AnnotationArchive overrides ParamArchive.
	AnnotationArchive = AnnotationPrefix + "archive"
	// AnnotationArchivePatterns overrides ParamArchivePatterns.
	AnnotationArchivePatterns = AnnotationPrefix + "archive-patterns"
	// AnnotationDeleteAfterUpload overrides ParamDeleteAfterUpload.
	AnnotationDeleteAfterUpload = AnnotationPrefix + "delete-after-upload"
	// AnnotationFirstOnly overrides ParamFirstOnly.
	AnnotationFirstOnly = AnnotationPrefix + "first-only"
	// AnnotationFirstOnlyReset re-arms firstOnly: whenever its value changes, each container's next dump is
	// uploaded again.
	AnnotationFirstOnlyReset = AnnotationPrefix + "first-only-reset"
	// AnnotationRetainFor overrides ParamRetainFor.
	AnnotationRetainFor = AnnotationPrefix + "retain-for"
	// AnnotationArchiveCompression overrides ParamArchiveCompression.
	AnnotationArchiveCompression = AnnotationPrefix + "archive-compression"
	// AnnotationArchiveCompressionLevel overrides ParamArchiveCompressionLevel.
	AnnotationArchiveCompressionLevel = AnnotationPrefix + "archive-compression-level"
	// AnnotationArchiveSparse overrides ParamArchiveSparse.
	AnnotationArchiveSparse = AnnotationPrefix + "archive-sparse"
)

// Pod annotations of the heap dump trigger (pkg/dump validates them; pkg/policy accepts every
// AnnotationDumpPrefix one as known).
const (
	// AnnotationDumpPrefix starts every dump annotation; one keeplog does not know is a typo.
	AnnotationDumpPrefix = AnnotationPrefix + "dump-"
	// AnnotationDumpPort asks for a dump with an HTTP request to the pod: http://<pod IP>:<port><path>.
	AnnotationDumpPort = AnnotationDumpPrefix + "port"
	// AnnotationDumpPath is the path of that request.
	AnnotationDumpPath = AnnotationDumpPrefix + "path"
	// AnnotationDumpMethod is the HTTP method: POST (default) or GET.
	AnnotationDumpMethod = AnnotationDumpPrefix + "method"
	// AnnotationDumpExec asks for a dump with a command run as `sh -c <value>` in a container (the exec subresource).
	AnnotationDumpExec = AnnotationDumpPrefix + "exec"
	// AnnotationDumpExecContainer is the container the command runs in; default the watched container.
	AnnotationDumpExecContainer = AnnotationDumpPrefix + "exec-container"
	// AnnotationDumpContainer is the container whose memory is watched; default the pod's first container.
	AnnotationDumpContainer = AnnotationDumpPrefix + "container"
	// AnnotationDumpThreshold is the working set, in percent of the container's memory limit, that triggers a dump.
	AnnotationDumpThreshold = AnnotationDumpPrefix + "threshold"
	// AnnotationDumpFirstOnly is "true" (default): a container is dumped only once on memory pressure until re-armed.
	AnnotationDumpFirstOnly = AnnotationDumpPrefix + "first-only"
	// AnnotationDumpRequested means each new value asks for one dump now (kubectl annotate, or the Alertmanager webhook).
	AnnotationDumpRequested = AnnotationDumpPrefix + "requested"
	// AnnotationDumpRearm means each new value re-arms firstOnly (the container may dump again on memory pressure).
	AnnotationDumpRearm = AnnotationDumpPrefix + "rearm"
)

// AnnotationStdoutGrace is the pod annotation (or namespace label) "true" that selects a pod for the stdout grace
// (--stdout-grace); a pod annotation "false" opts a pod out.
const AnnotationStdoutGrace = AnnotationPrefix + "stdout-grace"

// PV annotations keeplog writes.
const (
	// AnnotationPVPods is a JSON list of {namespace,name,uid}, oldest first, of the pods the volume served.
	AnnotationPVPods = AnnotationPrefix + "pods"
	// AnnotationPVNode is the node the volume's directories are on.
	AnnotationPVNode = AnnotationPrefix + "node"
	// AnnotationPVHostPath is the directory of the most recently published pod on that node.
	AnnotationPVHostPath = AnnotationPrefix + "host-path"
	// AnnotationPVNodeMissingSince marks a PV whose node was found missing, with the time (RFC 3339).
	AnnotationPVNodeMissingSince = AnnotationPrefix + "node-missing-since"
)
