// Package wire is the contract between the node plugin's read endpoint (pkg/retrieval) and its one client,
// keeplog-api (pkg/retrievalapi): the paths and the JSON they answer. It holds types only, so that keeplog-api does
// not link the node plugin's code and the node plugin does not link the API server's.
package wire

import "time"

// PathPrefix is where the node endpoints live; RBAC grants keeplog-api nonResourceURLs PathPrefix and PathPrefix+"/*".
const PathPrefix = "/retained"

// PodsPath lists the pod directories; below it are PodsPath/{dir}/files and PodsPath/{dir}/file?path=<relative path>.
const PodsPath = PathPrefix + "/v1/pods"

// Pod is one pod directory the node's records know.
type Pod struct {
	Dir            string            `json:"dir"`
	Namespace      string            `json:"namespace"`
	Name           string            `json:"name"`
	UID            string            `json:"uid"`
	Volume         string            `json:"volume"`
	Node           string            `json:"node"`
	FirstPublished time.Time         `json:"firstPublished"`
	LastPublished  time.Time         `json:"lastPublished"`
	UnpublishedAt  *time.Time        `json:"unpublishedAt,omitempty"` // nil while the pod's volume is published
	Annotations    map[string]string `json:"annotations,omitempty"`
	// ExpiresAt is when its retention ends (nil while published); the garbage collector deletes it after that once it
	// is archived.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// Archive is its archive status file summarized; nil when it has none (archiving off or nothing matched yet).
	Archive *ArchiveState `json:"archive,omitempty"`
}

// ArchiveState counts a pod directory's matching files by archive state (queued, uploading, done, failed, skipped,
// settling, rejected: the archiver's status file, docs/archiving.md).
type ArchiveState struct {
	Updated time.Time      `json:"updated"`
	Files   int            `json:"files"`
	States  map[string]int `json:"states"`
}

// PodList is the answer of GET PodsPath.
type PodList struct {
	Pods []Pod `json:"pods"`
}

// File is one entry of a pod directory's listing.
type File struct {
	Path    string    `json:"path"` // slash-separated, relative to the pod directory
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
}

// FileList is the answer of GET PodsPath/{dir}/files.
type FileList struct {
	Dir   string `json:"dir"`
	Files []File `json:"files"`
	// Skipped are entries that are never read: symlinks, devices, FIFOs, sockets (path → kind).
	Skipped map[string]string `json:"skipped,omitempty"`
	// NotEntered are directories on another mount or too deep to walk.
	NotEntered []string `json:"notEntered,omitempty"`
}
