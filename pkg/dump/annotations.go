package dump

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Pod annotations of the heap dump trigger. pkg/policy accepts every keeplog.csi.io/dump-* annotation as known, so
// these never count as unknown keeplog annotations there; this package validates them.
const (
	annotationPrefix = "keeplog.csi.io/"
	// AnnotationPort and AnnotationPath ask for a dump with an HTTP request to the pod: http://<pod IP>:<port><path>.
	AnnotationPort = annotationPrefix + "dump-port"
	AnnotationPath = annotationPrefix + "dump-path"
	// AnnotationMethod is the HTTP method: POST (default) or GET.
	AnnotationMethod = annotationPrefix + "dump-method"
	// AnnotationExec asks for a dump with a command run as `sh -c <value>` in a container (the exec subresource).
	AnnotationExec = annotationPrefix + "dump-exec"
	// AnnotationExecContainer is the container the command runs in; default the watched container.
	AnnotationExecContainer = annotationPrefix + "dump-exec-container"
	// AnnotationContainer is the container whose memory is watched; default the pod's first container.
	AnnotationContainer = annotationPrefix + "dump-container"
	// AnnotationThreshold is the working set, in percent of the container's memory limit, that triggers a dump.
	AnnotationThreshold = annotationPrefix + "dump-threshold"
	// AnnotationFirstOnly: "true" (default) dumps a container only once on memory pressure until re-armed.
	AnnotationFirstOnly = annotationPrefix + "dump-first-only"
	// AnnotationRequested: each new value asks for one dump now (kubectl annotate, or the Alertmanager webhook).
	AnnotationRequested = annotationPrefix + "dump-requested"
	// AnnotationRearm: each new value re-arms firstOnly (the container may dump again on memory pressure).
	AnnotationRearm = annotationPrefix + "dump-rearm"
)

// DefaultThreshold is the threshold in percent of the memory limit when the pod does not set one.
const DefaultThreshold = 80

// Method is how keeplog asks a pod for a heap dump.
type Method string

// Methods.
const (
	MethodHTTP Method = "http"
	MethodExec Method = "exec"
)

// Spec is a pod's dump configuration from its annotations.
type Spec struct {
	Method Method
	// HTTP
	Port       int
	Path       string
	HTTPMethod string // GET or POST
	// Exec
	Command       string
	ExecContainer string

	Container string // watched container
	Threshold int    // percent of the memory limit, 1-100
	FirstOnly bool
	Requested string // value of dump-requested ("" when absent)
	Rearm     string // value of dump-rearm
}

// knownAnnotations are every dump annotation; any other keeplog.csi.io/dump-* is a typo.
var knownAnnotations = []string{AnnotationPort, AnnotationPath, AnnotationMethod, AnnotationExec,
	AnnotationExecContainer, AnnotationContainer, AnnotationThreshold, AnnotationFirstOnly, AnnotationRequested,
	AnnotationRearm}

// OptedIn reports whether the annotations ask for dumps at all (a way to ask the pod: dump-port or dump-exec).
func OptedIn(ann map[string]string) bool {
	_, port := ann[AnnotationPort]
	_, exec := ann[AnnotationExec]
	return port || exec
}

// ParseSpec reads a pod's dump annotations. ok is false when the pod did not opt in or its configuration cannot
// work (then warns says why); a malformed optional value is a warning and its default applies.
func ParseSpec(pod *corev1.Pod) (spec Spec, warns []error, ok bool) {
	ann := pod.Annotations
	for _, k := range unknownDumpAnnotations(ann) {
		warns = append(warns, fmt.Errorf("unknown annotation %s (known: %s)", k, strings.Join(knownAnnotations, ", ")))
	}
	if !OptedIn(ann) {
		return Spec{}, warns, false
	}
	spec = Spec{Threshold: DefaultThreshold, FirstOnly: true, HTTPMethod: "POST",
		Requested: ann[AnnotationRequested], Rearm: ann[AnnotationRearm]}
	bad := func(k, why string) { warns = append(warns, fmt.Errorf("annotation %s=%q: %s", k, ann[k], why)) }

	port, hasPort := ann[AnnotationPort]
	cmd, hasExec := ann[AnnotationExec]
	switch {
	case hasPort && hasExec:
		bad(AnnotationExec, "set either "+AnnotationPort+" (HTTP) or "+AnnotationExec+", not both; no dumps for this pod")
		return Spec{}, warns, false
	case hasPort:
		spec.Method = MethodHTTP
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			bad(AnnotationPort, "must be a port number 1-65535; no dumps for this pod")
			return Spec{}, warns, false
		}
		spec.Port = n
		spec.Path = ann[AnnotationPath]
		if spec.Path == "" {
			bad(AnnotationPath, "required with "+AnnotationPort+" (e.g. /dump); no dumps for this pod")
			return Spec{}, warns, false
		}
		if !strings.HasPrefix(spec.Path, "/") || strings.ContainsAny(spec.Path, " \t\r\n#") {
			bad(AnnotationPath, "must start with / and hold no spaces or #; no dumps for this pod")
			return Spec{}, warns, false
		}
		if m, set := ann[AnnotationMethod]; set {
			switch strings.ToUpper(m) {
			case "GET", "POST":
				spec.HTTPMethod = strings.ToUpper(m)
			default:
				bad(AnnotationMethod, "must be GET or POST; using POST")
			}
		}
	default:
		spec.Method = MethodExec
		if strings.TrimSpace(cmd) == "" {
			bad(AnnotationExec, "must be a command; no dumps for this pod")
			return Spec{}, warns, false
		}
		spec.Command = cmd
	}
	if _, set := ann[AnnotationPath]; set && spec.Method != MethodHTTP {
		bad(AnnotationPath, "only used with "+AnnotationPort+"; ignored")
	}
	if _, set := ann[AnnotationExecContainer]; set && spec.Method != MethodExec {
		bad(AnnotationExecContainer, "only used with "+AnnotationExec+"; ignored")
	}

	names := containerNames(pod)
	spec.Container = ann[AnnotationContainer]
	if spec.Container == "" {
		if len(names) == 0 {
			return Spec{}, append(warns, errors.New("the pod has no containers")), false
		}
		spec.Container = names[0]
	} else if !contains(names, spec.Container) {
		bad(AnnotationContainer, fmt.Sprintf("no such container (the pod has %s); no dumps for this pod", strings.Join(names, ", ")))
		return Spec{}, warns, false
	}
	if spec.Method == MethodExec {
		spec.ExecContainer = ann[AnnotationExecContainer]
		if spec.ExecContainer == "" {
			spec.ExecContainer = spec.Container
		} else if !contains(names, spec.ExecContainer) {
			bad(AnnotationExecContainer, fmt.Sprintf("no such container (the pod has %s); no dumps for this pod", strings.Join(names, ", ")))
			return Spec{}, warns, false
		}
	}
	if v, set := ann[AnnotationThreshold]; set {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), "%"))
		if err != nil || n < 1 || n > 100 {
			bad(AnnotationThreshold, fmt.Sprintf("must be a whole percentage 1-100 of the memory limit; using %d", DefaultThreshold))
		} else {
			spec.Threshold = n
		}
	}
	if v, set := ann[AnnotationFirstOnly]; set {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(AnnotationFirstOnly, "must be true or false; using true")
		} else {
			spec.FirstOnly = b
		}
	}
	return spec, warns, true
}

// containerNames are the pod's regular containers, in order.
func containerNames(pod *corev1.Pod) []string {
	var out []string
	for _, c := range pod.Spec.Containers {
		out = append(out, c.Name)
	}
	return out
}

// ContainerID returns the runtime's ID of a running container ("containerd://<id>" → "<id>"), "" when it has none.
func ContainerID(pod *corev1.Pod, name string) string {
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name != name || s.State.Running == nil {
			continue
		}
		id := s.ContainerID
		if i := strings.Index(id, "://"); i >= 0 {
			id = id[i+3:]
		}
		if !safeID(id) {
			return ""
		}
		return id
	}
	return ""
}

// safeID is true for IDs made of letters, digits, '-', '_' and '.', not starting with '.': they are only compared
// with cgroup directory names, but must never be able to mean a path.
func safeID(s string) bool {
	if s == "" || s[0] == '.' {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_' && r != '.' {
			return false
		}
	}
	return true
}

// unknownDumpAnnotations are the keeplog.csi.io/dump-* annotations keeplog does not know (typos).
func unknownDumpAnnotations(ann map[string]string) []string {
	var out []string
	for _, k := range sortedKeys(ann) {
		if strings.HasPrefix(k, annotationPrefix+"dump-") && !isKnown(k) {
			out = append(out, k)
		}
	}
	return out
}

func isKnown(k string) bool { return contains(knownAnnotations, k) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
