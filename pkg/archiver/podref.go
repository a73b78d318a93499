package archiver

import (
	"fmt"
	"path"
	"strings"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// PodRef names the pod a pod directory belongs to; pkg/store owns the <namespace>_<pod>_<uid> naming contract.
type PodRef = store.PodRef

// containerOf returns the container of a path inside a pod directory: its
// first component, or "" for a file directly in the pod directory.
func containerOf(rel string) string {
	if i := strings.IndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return ""
}

// sanitizeComponent maps one path component to a safe remote name: bytes
// other than [A-Za-z0-9._+@=,-] become "_", "." and ".." and empty names are
// replaced, and the result is at most 200 bytes.
func sanitizeComponent(c string) string {
	var b strings.Builder
	for i := 0; i < len(c); i++ {
		ch := c[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9',
			ch == '.', ch == '_', ch == '-', ch == '+', ch == '@', ch == '=', ch == ',':
			b.WriteByte(ch)
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	switch s {
	case "", ".", "..":
		s = strings.Repeat("_", len(s)+1)
	}
	if len(s) > 200 {
		s = s[:200]
	}
	// Names we use for our own temporary files are never produced.
	if strings.HasPrefix(s, ".") && strings.Contains(s, api.TempFileMarker) {
		s = "_" + s[1:]
	}
	return s
}

// RemotePath is where a file at rel (slash-separated, inside the pod
// directory) of pod is archived: <base>/<ns>/<pod>/<uid>/<sanitized rel>.
func RemotePath(base string, pod PodRef, rel string) (string, error) {
	if rel == "" {
		return "", fmt.Errorf("remote path for pod %s: empty file path", pod)
	}
	comps := strings.Split(rel, "/")
	out := make([]string, 0, len(comps)+4)
	out = append(out, base, sanitizeComponent(pod.Namespace), sanitizeComponent(pod.Name), sanitizeComponent(pod.UID))
	for _, c := range comps {
		if c == "" {
			continue
		}
		out = append(out, sanitizeComponent(c))
	}
	if len(out) == 4 {
		return "", fmt.Errorf("remote path for pod %s: file path %q has no name", pod, rel)
	}
	p := path.Join(out...)
	if !strings.HasPrefix(p, path.Clean(base)+"/") && path.Clean(base) != "/" {
		return "", fmt.Errorf("remote path for pod %s, file %q escapes base %q", pod, rel, base)
	}
	return p, nil
}

// withGeneration returns the n-th alternative remote name (n >= 2) for a
// path already used by another file: "dir/name.hprof" -> "dir/name.2.hprof".
func withGeneration(p string, n int) string {
	if n < 2 {
		return p
	}
	dir, file := path.Split(p)
	ext := path.Ext(file)
	stem := strings.TrimSuffix(file, ext)
	if stem == "" { // ".hprof" alone: treat all as stem
		stem, ext = file, ""
	}
	return dir + fmt.Sprintf("%s.%d%s", stem, n, ext)
}

// manifestPath is the manifest beside an archived file.
func manifestPath(remote string) string { return remote + manifestSuffix }

const (
	manifestSuffix = ".manifest.json"
)

// tempPath is the temporary name an upload writes before renaming.
func tempPath(final, itemID string) string {
	dir, file := path.Split(final)
	return dir + "." + file + api.TempFileMarker + itemID[:16]
}
