package policy

import (
	"path"
	"strings"

	"github.com/keeplog/keeplog/internal/safefs"
	"github.com/keeplog/keeplog/pkg/api"
)

// ArchivePolicy says which files of a pod directory the archiver uploads and how (Policy.ArchivePolicy): the
// archiver applies it, the heap dump trigger reads its patterns to know which files are dumps.
type ArchivePolicy struct {
	// Off archives nothing from the pod directory.
	Off bool
	// Patterns are path.Match globs. A pattern without "/" matches a file's
	// base name; one with "/" matches its path inside the container
	// directory (e.g. "dumps/*.hprof"). Empty means DefaultArchivePatterns.
	Patterns []string
	// DeleteAfterUpload deletes the local file once its upload is verified.
	DeleteAfterUpload bool
	// FirstOnly uploads only the first finished file of each container;
	// later ones are recorded as skipped.
	FirstOnly bool
	// FirstOnlyReset starts a new "first" for every container whenever its
	// value changes (e.g. fed from a pod annotation).
	FirstOnlyReset string
	// Compression is "" or "none" (stored as is) or "zstd" (stored as independent zstd frames, remote name +
	// ".zst"), at CompressionLevel (1-22; 0 = DefaultZstdLevel).
	Compression      string
	CompressionLevel int
	// Sparse is what happens to a sparse file (pkg/archiver's sparse.go) that is not compressed anyway:
	// SparseCompress (also ""), SparseSkip or SparseUpload.
	Sparse SparseAction
}

// DefaultArchivePatterns are heap dumps, core dumps and JVM crash logs.
func DefaultArchivePatterns() []string {
	return []string{"*.hprof", "core", "core.*", "hs_err_pid*.log"}
}

// Matches reports whether a file at rel (inside the pod directory, slash
// separated, first component the container) is to be archived. keeplog's
// own files never match.
func (p ArchivePolicy) Matches(rel string) bool {
	base := path.Base(rel)
	if p.Off || IsOwnFile(base) {
		return false
	}
	inContainer := rel
	if i := strings.IndexByte(rel, '/'); i >= 0 {
		inContainer = rel[i+1:]
	}
	pats := p.Patterns
	if len(pats) == 0 {
		pats = DefaultArchivePatterns()
	}
	for _, pat := range pats {
		target := base
		if strings.Contains(pat, "/") {
			target = inContainer
		}
		if ok, err := path.Match(pat, target); err == nil && ok {
			return true
		}
	}
	return false
}

// IsOwnFile is true for the status file an older keeplog wrote in the pod directory and its temporary files:
// never archived, and the archiver's watch ignores them before any syscall.
func IsOwnFile(base string) bool {
	return base == api.LegacyArchiveStatusFile || safefs.IsTempOf(base, api.LegacyArchiveStatusFile)
}

// ArchivePolicy is the part of the policy the archiver applies.
func (p Policy) ArchivePolicy() ArchivePolicy {
	return ArchivePolicy{Off: !p.Archive, Patterns: p.ArchivePatterns, DeleteAfterUpload: p.DeleteAfterUpload,
		FirstOnly: p.FirstOnly, FirstOnlyReset: p.FirstOnlyReset, Compression: p.ArchiveCompression,
		CompressionLevel: p.ArchiveCompressionLevel, Sparse: p.ArchiveSparse}
}
