// Package policy turns a volume's StorageClass parameters (or a CSI inline volume's attributes) and its pod's
// keeplog.csi.io/* annotations into what keeplog does with the pod's directory: which files it archives and how,
// how long it keeps the directory after the pod, and what it does when the volume grows past its size.
//
// Precedence: pod annotation > StorageClass parameter > driver default. A malformed parameter is refused when the
// volume is created; a malformed annotation is reported (an Event on the pod) and ignored, so a pod's typo never
// loses its files.
package policy

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/keeplog/keeplog/pkg/api"
)

// Compression algorithms of api.ParamArchiveCompression.
const (
	CompressionNone = "none"
	CompressionZstd = "zstd"
)

// SparseAction is what the archiver does with a sparse file (apparent size far beyond its data) that its policy
// does not compress anyway.
type SparseAction string

// Sparse actions.
const (
	SparseCompress SparseAction = "compress" // default: archived compressed (holes cost next to nothing)
	SparseSkip     SparseAction = "skip"     // not archived: journalled skipped, with an Event
	SparseUpload   SparseAction = "upload"   // archived raw, holes and all
)

// LimitAction is what happens when a volume's usage passes its requested size.
type LimitAction string

// Limit actions.
const (
	LimitWarn  LimitAction = "warn"  // an Event and a metric
	LimitBlock LimitAction = "block" // also stop the volume from growing until it is back under its size
)

// Defaults come from the driver's flags.
type Defaults struct {
	// RetainFor applies when neither the StorageClass nor the pod says; <= 0 means DefaultRetainFor.
	RetainFor time.Duration
	// MaxRetainFor caps what a StorageClass or a pod may ask for; <= 0 means no cap.
	MaxRetainFor time.Duration
}

// DefaultRetainFor is the retention when nobody configured one: a week.
const DefaultRetainFor = 7 * 24 * time.Hour

// Policy is the effective policy of one pod directory.
type Policy struct {
	Archive           bool
	ArchivePatterns   []string // empty: the archiver's defaults
	DeleteAfterUpload bool
	FirstOnly         bool
	FirstOnlyReset    string
	RetainFor         time.Duration
	LimitAction       LimitAction
	SizeBytes         int64 // from api.ParamSize; 0 when not set
	// ArchiveCompression is "" (none) or CompressionZstd, at ArchiveCompressionLevel (0: the archiver's default).
	ArchiveCompression      string
	ArchiveCompressionLevel int
	// ArchiveSparse is "" (SparseCompress) or a SparseAction.
	ArchiveSparse SparseAction
}

type field struct {
	param, annotation string
	apply             func(p *Policy, v string) error
}

var fields = []field{
	{api.ParamArchive, api.AnnotationArchive, func(p *Policy, v string) (err error) { p.Archive, err = parseBool(v); return }},
	{api.ParamArchivePatterns, api.AnnotationArchivePatterns, func(p *Policy, v string) (err error) {
		p.ArchivePatterns, err = parsePatterns(v)
		return
	}},
	{api.ParamDeleteAfterUpload, api.AnnotationDeleteAfterUpload, func(p *Policy, v string) (err error) {
		p.DeleteAfterUpload, err = parseBool(v)
		return
	}},
	{api.ParamFirstOnly, api.AnnotationFirstOnly, func(p *Policy, v string) (err error) { p.FirstOnly, err = parseBool(v); return }},
	{"", api.AnnotationFirstOnlyReset, func(p *Policy, v string) error { p.FirstOnlyReset = v; return nil }},
	{api.ParamRetainFor, api.AnnotationRetainFor, func(p *Policy, v string) (err error) { p.RetainFor, err = parseDuration(v); return }},
	{api.ParamLimitAction, "", func(p *Policy, v string) error {
		switch a := LimitAction(v); a {
		case LimitWarn, LimitBlock:
			p.LimitAction = a
			return nil
		}
		return fmt.Errorf("must be %q or %q", LimitWarn, LimitBlock)
	}},
	{api.ParamSize, "", func(p *Policy, v string) (err error) { p.SizeBytes, err = parseSize(v); return }},
	{api.ParamArchiveCompression, api.AnnotationArchiveCompression, parseCompression},
	{api.ParamArchiveCompressionLevel, api.AnnotationArchiveCompressionLevel, func(p *Policy, v string) (err error) {
		p.ArchiveCompressionLevel, err = parseZstdLevel(v)
		return
	}},
	{api.ParamArchiveSparse, api.AnnotationArchiveSparse, func(p *Policy, v string) error {
		switch a := SparseAction(v); a {
		case SparseCompress, SparseSkip, SparseUpload:
			p.ArchiveSparse = a
			return nil
		}
		return fmt.Errorf("must be %q, %q or %q", SparseCompress, SparseSkip, SparseUpload)
	}},
}

// parseCompression reads "none", "zstd" or "zstd:<level>"; "zstd" alone keeps a level set elsewhere.
func parseCompression(p *Policy, v string) error {
	algo, level, hasLevel := strings.Cut(v, ":")
	switch {
	case algo == CompressionNone && !hasLevel:
		p.ArchiveCompression, p.ArchiveCompressionLevel = "", 0
		return nil
	case algo != CompressionZstd:
		return fmt.Errorf("must be %q or %q (optionally with a level, e.g. zstd:3)", CompressionNone, CompressionZstd)
	case hasLevel:
		n, err := parseZstdLevel(level)
		if err != nil {
			return fmt.Errorf("level %q: %w", level, err)
		}
		p.ArchiveCompressionLevel = n
	}
	p.ArchiveCompression = CompressionZstd
	return nil
}

func parseZstdLevel(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 22 {
		return 0, errors.New("must be a zstd level from 1 to 22")
	}
	return n, nil
}

// ValidateParameters checks StorageClass parameters (or inline volume attributes): every key known, every value
// well-formed. CO-added csi.storage.k8s.io/* keys are accepted. The error names each bad key and value.
func ValidateParameters(params map[string]string) error {
	var errs []error
	var p Policy
	for _, k := range sortedKeys(params) {
		if strings.HasPrefix(k, api.COParameterPrefix) {
			continue
		}
		f, ok := fieldByParam(k)
		if !ok {
			errs = append(errs, fmt.Errorf("unknown StorageClass parameter %q (known: %s)", k, strings.Join(ParameterNames(), ", ")))
			continue
		}
		if err := f.apply(&p, params[k]); err != nil {
			errs = append(errs, fmt.Errorf("parameter %s=%q: %w", k, params[k], err))
		}
	}
	return errors.Join(errs...)
}

// ParameterNames lists the parameters keeplog understands.
func ParameterNames() []string {
	var out []string
	for _, f := range fields {
		if f.param != "" {
			out = append(out, f.param)
		}
	}
	sort.Strings(out)
	return out
}

// Resolve computes a pod directory's policy from its volume's parameters and its pod's annotations. Problems come
// back as warnings (meant for an Event on the pod): the offending value is ignored, the rest still applies.
func Resolve(params, annotations map[string]string, d Defaults) (Policy, []error) {
	p := Policy{Archive: true, RetainFor: d.RetainFor, LimitAction: LimitWarn}
	if p.RetainFor <= 0 {
		p.RetainFor = DefaultRetainFor
	}
	var warns []error
	for _, f := range fields {
		if v, ok := params[f.param]; ok && f.param != "" {
			if err := f.apply(&p, v); err != nil {
				warns = append(warns, fmt.Errorf("StorageClass parameter %s=%q ignored: %w", f.param, v, err))
			}
		}
	}
	for _, f := range fields {
		if v, ok := annotations[f.annotation]; ok && f.annotation != "" {
			next := p
			if err := f.apply(&next, v); err != nil {
				warns = append(warns, fmt.Errorf("annotation %s=%q ignored: %w", f.annotation, v, err))
				continue
			}
			p = next
		}
	}
	for k := range annotations {
		if strings.HasPrefix(k, api.AnnotationPrefix) && !knownAnnotation(k) {
			warns = append(warns, fmt.Errorf("annotation %s is not one keeplog knows", k))
		}
	}
	if d.MaxRetainFor > 0 && p.RetainFor > d.MaxRetainFor {
		warns = append(warns, fmt.Errorf("retention %s capped at the driver's maximum %s", p.RetainFor, d.MaxRetainFor))
		p.RetainFor = d.MaxRetainFor
	}
	return p, warns
}

// knownAnnotation is true for the policy annotations and for the keeplog.csi.io/dump-* family, which the heap
// dump trigger reads.
func knownAnnotation(k string) bool {
	for _, f := range fields {
		if f.annotation == k {
			return true
		}
	}
	return strings.HasPrefix(k, api.AnnotationPrefix+"dump-")
}

// KeeplogAnnotations returns the keeplog.csi.io/* annotations of a pod.
func KeeplogAnnotations(ann map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range ann {
		if strings.HasPrefix(k, api.AnnotationPrefix) {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func fieldByParam(k string) (field, bool) {
	for _, f := range fields {
		if f.param != "" && f.param == k {
			return f, true
		}
	}
	return field{}, false
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

func parseBool(v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errors.New("must be true or false")
	}
	return b, nil
}

func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, errors.New("must be a duration such as 72h or 30m")
	}
	if d <= 0 {
		return 0, errors.New("must be positive")
	}
	return d, nil
}

func parseSize(v string) (int64, error) {
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return 0, errors.New("must be a quantity such as 1Gi or 500Mi")
	}
	n, ok := q.AsInt64()
	if !ok || n <= 0 {
		return 0, errors.New("must be a positive whole number of bytes")
	}
	return n, nil
}

// parsePatterns splits a comma-separated list of globs; each must be relative, without "..", and valid.
func parsePatterns(v string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if strings.HasPrefix(p, "/") || strings.Contains(p, "..") {
			return nil, fmt.Errorf("pattern %q must be relative and must not contain \"..\"", p)
		}
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("pattern %q: %v", p, err)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, errors.New("no pattern given")
	}
	return out, nil
}
