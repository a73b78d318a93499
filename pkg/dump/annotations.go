package dump

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/keeplog/keeplog/pkg/api"
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
var knownAnnotations = []string{api.AnnotationDumpPort, api.AnnotationDumpPath, api.AnnotationDumpMethod, api.AnnotationDumpExec,
	api.AnnotationDumpExecContainer, api.AnnotationDumpContainer, api.AnnotationDumpThreshold, api.AnnotationDumpFirstOnly, api.AnnotationDumpRequested,
	api.AnnotationDumpRearm}

// OptedIn reports whether the annotations ask for dumps at all (a way to ask the pod: dump-port or dump-exec).
func OptedIn(ann map[string]string) bool {
	_, port := ann[api.AnnotationDumpPort]
	_, exec := ann[api.AnnotationDumpExec]
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
		Requested: ann[api.AnnotationDumpRequested], Rearm: ann[api.AnnotationDumpRearm]}
	bad := func(k, why string) { warns = append(warns, fmt.Errorf("annotation %s=%q: %s", k, ann[k], why)) }

	port, hasPort := ann[api.AnnotationDumpPort]
	cmd, hasExec := ann[api.AnnotationDumpExec]
	switch {
	case hasPort && hasExec:
		bad(api.AnnotationDumpExec, "set either "+api.AnnotationDumpPort+" (HTTP) or "+api.AnnotationDumpExec+", not both; no dumps for this pod")
		return Spec{}, warns, false
	case hasPort:
		spec.Method = MethodHTTP
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			bad(api.AnnotationDumpPort, "must be a port number 1-65535; no dumps for this pod")
			return Spec{}, warns, false
		}
		spec.Port = n
		spec.Path = ann[api.AnnotationDumpPath]
		if spec.Path == "" {
			bad(api.AnnotationDumpPath, "required with "+api.AnnotationDumpPort+" (e.g. /dump); no dumps for this pod")
			return Spec{}, warns, false
		}
		if !strings.HasPrefix(spec.Path, "/") || strings.ContainsAny(spec.Path, " \t\r\n#") {
			bad(api.AnnotationDumpPath, "must start with / and hold no spaces or #; no dumps for this pod")
			return Spec{}, warns, false
		}
		if m, set := ann[api.AnnotationDumpMethod]; set {
			switch strings.ToUpper(m) {
			case "GET", "POST":
				spec.HTTPMethod = strings.ToUpper(m)
			default:
				bad(api.AnnotationDumpMethod, "must be GET or POST; using POST")
			}
		}
	default:
		spec.Method = MethodExec
		if strings.TrimSpace(cmd) == "" {
			bad(api.AnnotationDumpExec, "must be a command; no dumps for this pod")
			return Spec{}, warns, false
		}
		spec.Command = cmd
	}
	if _, set := ann[api.AnnotationDumpPath]; set && spec.Method != MethodHTTP {
		bad(api.AnnotationDumpPath, "only used with "+api.AnnotationDumpPort+"; ignored")
	}
	if _, set := ann[api.AnnotationDumpExecContainer]; set && spec.Method != MethodExec {
		bad(api.AnnotationDumpExecContainer, "only used with "+api.AnnotationDumpExec+"; ignored")
	}

	names := containerNames(pod)
	spec.Container = ann[api.AnnotationDumpContainer]
	if spec.Container == "" {
		if len(names) == 0 {
			return Spec{}, append(warns, errors.New("the pod has no containers")), false
		}
		spec.Container = names[0]
	} else if !contains(names, spec.Container) {
		bad(api.AnnotationDumpContainer, fmt.Sprintf("no such container (the pod has %s); no dumps for this pod", strings.Join(names, ", ")))
		return Spec{}, warns, false
	}
	if spec.Method == MethodExec {
		spec.ExecContainer = ann[api.AnnotationDumpExecContainer]
		if spec.ExecContainer == "" {
			spec.ExecContainer = spec.Container
		} else if !contains(names, spec.ExecContainer) {
			bad(api.AnnotationDumpExecContainer, fmt.Sprintf("no such container (the pod has %s); no dumps for this pod", strings.Join(names, ", ")))
			return Spec{}, warns, false
		}
	}
	if v, set := ann[api.AnnotationDumpThreshold]; set {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), "%"))
		if err != nil || n < 1 || n > 100 {
			bad(api.AnnotationDumpThreshold, fmt.Sprintf("must be a whole percentage 1-100 of the memory limit; using %d", DefaultThreshold))
		} else {
			spec.Threshold = n
		}
	}
	if v, set := ann[api.AnnotationDumpFirstOnly]; set {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(api.AnnotationDumpFirstOnly, "must be true or false; using true")
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
		if strings.HasPrefix(k, api.AnnotationPrefix+"dump-") && !isKnown(k) {
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
