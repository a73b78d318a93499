package api

// On-node names below keeplog's --root: the node layout contract (docs and collectors rely on them).
const (
	// KeeplogDir is keeplog's own directory name, in two places: <root>/.keeplog/ holds keeplog's records (root
	// only, 0700), and <pod dir>/.keeplog/ holds what keeplog wrote about the pod (root-owned 0755). A namespace never
	// starts with '.', so it never clashes with a pod directory; the archiver never watches or archives it.
	KeeplogDir = ".keeplog"
	// PodLogsDir is <root>/.pods/<ns>_<pod>_<uid>/<container>/<n>.log: stdout/stderr in kubelet's own layout.
	PodLogsDir = ".pods"
	// FallbackDirPrefix starts a volume's directory name when the CO sent no pod information: _volume_<volume-id>.
	// Kubernetes namespaces never start with '_', so it cannot clash with a pod directory.
	FallbackDirPrefix = "_volume_"
	// UntrustedKeeplogDirPrefix starts the name a pod's fake .keeplog/ (not owned by root) is moved aside to.
	UntrustedKeeplogDirPrefix = KeeplogDir + ".untrusted-"
	// TempFileMarker is in the name of the archiver's temporary files (local and remote) until they are renamed.
	TempFileMarker = KeeplogDir + "-tmp-"
	// PodLogsTempSuffix ends the temporary hard link made in PodLogsDir before it is renamed over its final name; it
	// does not end in ".log", so no collector glob ever matches it.
	PodLogsTempSuffix = KeeplogDir + "-link"
)

// keeplog's records below <root>/.keeplog/ (pkg/store and the features' own state).
const (
	// VolumesDir is <root>/.keeplog/volumes/<volume-id>/, one per volume.
	VolumesDir = "volumes"
	// VolumeRecordFile is volumes/<volume-id>/volume.json: what was asked for (name, kind, capacity, parameters, node).
	VolumeRecordFile = "volume.json"
	// PodRecordsDir is volumes/<volume-id>/pods/<pod-dir>.json: each pod directory the volume owns.
	PodRecordsDir = "pods"
	// TargetRecordsDir is volumes/<volume-id>/targets/<hash>.json: each target path the volume is published at.
	TargetRecordsDir = "targets"
	// ArchiveJournalDir is <root>/.keeplog/archiver/: the archive journal (one record per file, exactly once).
	ArchiveJournalDir = "archiver"
	// ArchiveWalkedDir is <root>/.keeplog/archiver/walked/: an empty file per retained pod directory whose last walk
	// found nothing for the archiver to do; a restart does not walk those at once (pkg/archiver walked.go).
	ArchiveWalkedDir = "walked"
	// DumpStateDir is <root>/.keeplog/dumps/: the heap dump trigger's per-container state (firstOnly, cooldown).
	DumpStateDir = "dumps"
	// BlockedRecordsDir is <root>/.keeplog/usage/blocked/: the pod directories blocked by limitAction block.
	BlockedRecordsDir = "usage/blocked"
)

// Files inside <pod dir>/.keeplog/ (pkg/podinfo, and the archiver's status file).
const (
	// PodYAMLFile is the pod as the API returned it at publish, managedFields removed, literal env values redacted.
	PodYAMLFile = "pod.yaml"
	// PodTextFile is a summary of the pod: namespace, name, uid, node, owners, labels, containers, start, QoS.
	PodTextFile = "pod.txt"
	// StatusYAMLFile is each container's final state at unpublish (schema EndStateAPIVersion, EndStateKind).
	StatusYAMLFile = "status.yaml"
	// EndedTextFile is the same end state as text, for people.
	EndedTextFile = "ended.txt"
	// LogsDir is logs/<container>/<n>.log: kubelet's stdout/stderr files, copied while the pod runs.
	LogsDir = "logs"
	// ArchiveStatusFile is each matching file's archive state (with archiving on).
	ArchiveStatusFile = "archive-status.json"
	// ArchiveStatusPath is ArchiveStatusFile's path inside a pod directory.
	ArchiveStatusPath = KeeplogDir + "/" + ArchiveStatusFile
	// LegacyArchiveStatusFile is where keeplog before 0.4 wrote the status file: in the pod directory itself.
	LegacyArchiveStatusFile = KeeplogDir + "-archive-status.json"
)

// status.yaml's schema.
const (
	// EndStateAPIVersion is status.yaml's apiVersion.
	EndStateAPIVersion = "keeplog.csi.io/v1"
	// EndStateKind is status.yaml's kind.
	EndStateKind = "PodEndState"
)

// Files beside the container directories of a <root>/.pods/<ns>_<pod>_<uid>/ entry (the stdout grace).
const (
	// PodLogsPodFile holds the pod as the API returned it, so that a deleted pod's lines still get its labels.
	PodLogsPodFile = "pod.json"
	// PodLogsEndedFile holds the time (RFC 3339) the pod was gone from the node: its retention clock's start.
	PodLogsEndedFile = "ended"
)

// The collector contract: which files below keeplog's root a log collector reads, as globs relative to the root
// (doublestar syntax: '**' is any number of directories). The snippets in charts/keeplog/files/collectors/ use exactly
// these (TestCollectorSnippet* tests check them against a tree made by pkg/podinfo), and docs/collectors.md documents
// them. They are stable: changing one breaks every user's collector config.
//
//   - stdout/stderr: CollectStdoutGlob, keeplog's kubelet-layout tree (PodLogsDir). Added beside a
//     collector's /var/log/pods/*/*/*.log rule in the same input, the collector's own path parser (OpenTelemetry's
//     container operator, fluent-bit's/fluentd's tag regex) reads namespace, pod, uid and container unchanged, and a
//     copy continues the kubelet file it duplicates (same first bytes) instead of being read a second time.
//     Rotated files keep kubelet's names (<n>.log.<YYYYMMDD-hhmmss>[.gz]) and, as with /var/log/pods, are not in
//     the glob: a collector follows a file it reads through its rename.
//   - the applications' own text logs: CollectAppsGlob minus CollectExcludeFiles and CollectExcludeDirs. Only *.log
//     files, so heap dumps (.hprof), cores, JFR recordings and archives (.gz, .zip, .tar) are never read; keeplog's own
//     files (.keeplog/ with pod.yaml, pod.txt, status.yaml, ended.txt, archive-status.json and the stdout copies in
//     logs/; .keeplog.untrusted-*; .keeplog-* temp and legacy files) are excluded by name. The first directory level
//     below the pod directory is the container's (keeplog makes one per container for subPath: <container>).
//   - never: <root>/.keeplog/ (keeplog's records), which no glob above reaches.
const (
	// CollectStdoutGlob is every pod's stdout/stderr, in kubelet's layout.
	CollectStdoutGlob = PodLogsDir + "/*/*/*.log"
	// CollectAppsGlob is the applications' own text logs.
	CollectAppsGlob = "*_*_*/**/*.log"
	// CollectExcludeFiles is keeplog's own files inside pod directories, excluded from CollectAppsGlob.
	CollectExcludeFiles = "*_*_*/**/" + KeeplogDir + "*"
	// CollectExcludeDirs is everything below CollectExcludeFiles, excluded too.
	CollectExcludeDirs = CollectExcludeFiles + "/**"
)

// CollectStdoutFingerprintSize is the fingerprint_size (bytes) of the OpenTelemetry filelog receiver that reads
// /var/log/pods and CollectStdoutGlob together: the shortest CRI log line (a 20-character RFC 3339 timestamp,
// " stdout F ", an empty message, "\n"). The receiver knows a file by its first fingerprint_size bytes; with its
// default (1000) a file still shorter than that has a fingerprint that grows with it, so the fingerprint it remembers
// from its last read differs from the one it takes of keeplog's second path to the same inode at the next poll, and
// it reads the file again from the start. The runtime writes whole lines, so with this size every non-empty file has
// its whole fingerprint from its first line on, and one inode at two paths always has one fingerprint. Its first
// bytes hold the first line's timestamp to the nanosecond, so two different files do not share them.
const CollectStdoutFingerprintSize = 31
