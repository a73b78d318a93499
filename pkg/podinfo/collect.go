package podinfo

import "github.com/keeplog/keeplog/pkg/store"

// The collector contract: which files below keeplog's root a log collector reads, as globs relative to the root
// (doublestar syntax: '**' is any number of directories). The snippets in charts/keeplog/files/collectors/ use exactly
// these (TestCollectorSnippets checks them against a tree made by this package), and docs/collectors.md documents
// them. They are stable: changing one breaks every user's collector config.
//
//   - stdout/stderr: CollectStdoutGlob, keeplog's kubelet-layout tree (store.PodLogsDirName). Added beside a
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
	CollectStdoutGlob   = store.PodLogsDirName + "/*/*/*.log"
	CollectAppsGlob     = "*_*_*/**/*.log"
	CollectExcludeFiles = "*_*_*/**/" + KeeplogDirName + "*"
	CollectExcludeDirs  = CollectExcludeFiles + "/**"
)
