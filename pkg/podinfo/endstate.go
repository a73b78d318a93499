package podinfo

import (
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// Termination is how one run of a container ended.
type Termination struct {
	ExitCode    int32      `json:"exitCode"`
	Signal      int32      `json:"signal,omitempty"`
	Reason      string     `json:"reason,omitempty"` // OOMKilled, Error, Completed, ContainerCannotRun, ...
	Message     string     `json:"message,omitempty"`
	StartedAt   *time.Time `json:"startedAt,omitempty"`
	FinishedAt  *time.Time `json:"finishedAt,omitempty"`
	ContainerID string     `json:"containerID,omitempty"`
}

// ContainerEnd is one container's state when the volume was unpublished.
type ContainerEnd struct {
	Name         string `json:"name"`
	Type         string `json:"type"` // init, regular, ephemeral
	Image        string `json:"image,omitempty"`
	ImageID      string `json:"imageID,omitempty"`
	Ready        bool   `json:"ready"`
	RestartCount int32  `json:"restartCount"`
	// State is terminated, running, waiting, or unknown (no status reported for the container).
	State string `json:"state"`
	// Terminated is set when State is terminated.
	Terminated *Termination `json:"terminated,omitempty"`
	// Reason and Message of a waiting container (e.g. CrashLoopBackOff, ImagePullBackOff).
	WaitingReason  string     `json:"waitingReason,omitempty"`
	WaitingMessage string     `json:"waitingMessage,omitempty"`
	RunningSince   *time.Time `json:"runningSince,omitempty"`
	// LastTermination is the previous run's end (after a restart), if any.
	LastTermination *Termination `json:"lastTermination,omitempty"`
}

// EndState is status.yaml.
type EndState struct {
	APIVersion    string       `json:"apiVersion"`
	Kind          string       `json:"kind"`
	Pod           store.PodRef `json:"pod"`
	UnpublishedAt time.Time    `json:"unpublishedAt"`
	Phase         string       `json:"phase,omitempty"`
	Reason        string       `json:"reason,omitempty"`
	Message       string       `json:"message,omitempty"`
	// DeletionTimestamp is the pod's metadata.deletionTimestamp: the deadline by which the pod is to be gone (the
	// delete request plus DeletionGracePeriodSeconds), not when it went.
	DeletionTimestamp          *time.Time `json:"deletionTimestamp,omitempty"`
	DeletionGracePeriodSeconds *int64     `json:"deletionGracePeriodSeconds,omitempty"`
	// PodUnavailable says why the pod object could not be read; Containers is empty then.
	PodUnavailable string         `json:"podUnavailable,omitempty"`
	Containers     []ContainerEnd `json:"containers,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func termination(t *corev1.ContainerStateTerminated) *Termination {
	if t == nil {
		return nil
	}
	return &Termination{ExitCode: t.ExitCode, Signal: t.Signal, Reason: t.Reason, Message: t.Message,
		StartedAt: timePtr(t.StartedAt.Time), FinishedAt: timePtr(t.FinishedAt.Time), ContainerID: t.ContainerID}
}

// EndStateOf extracts each container's final state from pod (init containers first, then regular, then ephemeral,
// in spec order; a container without a status is "unknown").
func EndStateOf(pod *corev1.Pod, unpublishedAt time.Time) EndState {
	es := EndState{APIVersion: api.EndStateAPIVersion, Kind: api.EndStateKind, Pod: refOf(pod), UnpublishedAt: unpublishedAt.UTC(),
		Phase: string(pod.Status.Phase), Reason: pod.Status.Reason, Message: pod.Status.Message}
	if pod.DeletionTimestamp != nil {
		es.DeletionTimestamp = timePtr(pod.DeletionTimestamp.Time)
		if g := pod.DeletionGracePeriodSeconds; g != nil {
			grace := *g
			es.DeletionGracePeriodSeconds = &grace
		}
	}
	add := func(typ string, names, images []string, statuses []corev1.ContainerStatus) {
		byName := map[string]*corev1.ContainerStatus{}
		for i := range statuses {
			byName[statuses[i].Name] = &statuses[i]
		}
		for i, name := range names {
			ce := ContainerEnd{Name: name, Type: typ, Image: images[i], State: "unknown"}
			if st := byName[name]; st != nil {
				ce.ImageID, ce.Ready, ce.RestartCount = st.ImageID, st.Ready, st.RestartCount
				switch s := st.State; {
				case s.Terminated != nil:
					ce.State, ce.Terminated = "terminated", termination(s.Terminated)
				case s.Running != nil:
					ce.State, ce.RunningSince = "running", timePtr(s.Running.StartedAt.Time)
				case s.Waiting != nil:
					ce.State, ce.WaitingReason, ce.WaitingMessage = "waiting", s.Waiting.Reason, s.Waiting.Message
				}
				ce.LastTermination = termination(st.LastTerminationState.Terminated)
			}
			es.Containers = append(es.Containers, ce)
		}
	}
	names := func(cs []corev1.Container) (n, img []string) {
		for _, c := range cs {
			n, img = append(n, c.Name), append(img, c.Image)
		}
		return n, img
	}
	n, img := names(pod.Spec.InitContainers)
	add("init", n, img, pod.Status.InitContainerStatuses)
	n, img = names(pod.Spec.Containers)
	add("regular", n, img, pod.Status.ContainerStatuses)
	n, img = nil, nil
	for _, c := range pod.Spec.EphemeralContainers {
		n, img = append(n, c.Name), append(img, c.Image)
	}
	add("ephemeral", n, img, pod.Status.EphemeralContainerStatuses)
	return es
}

func formatTermination(t *Termination) string {
	parts := []string{fmt.Sprintf("exit code %d", t.ExitCode)}
	if t.Reason != "" {
		parts = append(parts, "reason "+t.Reason)
	}
	if t.Signal != 0 {
		parts = append(parts, fmt.Sprintf("signal %d", t.Signal))
	}
	if t.StartedAt != nil {
		parts = append(parts, "started "+formatTime(*t.StartedAt))
	}
	if t.FinishedAt != nil {
		parts = append(parts, "finished "+formatTime(*t.FinishedAt))
	}
	if t.Message != "" {
		parts = append(parts, fmt.Sprintf("message %q", t.Message))
	}
	return strings.Join(parts, ", ")
}

// writeDeletion says when the pod's deletion was asked for and its deadline. deletionTimestamp is not when the pod
// went: the API server sets it to the delete request's time plus the grace period.
func writeDeletion(b *textBuilder, es EndState) {
	if es.DeletionTimestamp == nil {
		return
	}
	deadline := formatTime(*es.DeletionTimestamp)
	if g := es.DeletionGracePeriodSeconds; g != nil {
		grace := time.Duration(*g) * time.Second
		b.field("Delete requested", formatTime(es.DeletionTimestamp.Add(-grace)))
		deadline += fmt.Sprintf(" (grace %s)", grace)
	}
	b.field("Delete deadline", deadline)
}

// EndedText is ended.txt: EndState for humans, one line per container (plus its previous run after a restart).
func EndedText(es EndState) string {
	var b textBuilder
	b.field("Pod", es.Pod.String())
	b.field("Unpublished", formatTime(es.UnpublishedAt))
	if es.PodUnavailable != "" {
		b.field("Pod object", "not available: "+es.PodUnavailable)
		return b.String()
	}
	phase := orNone(es.Phase)
	if es.Reason != "" {
		phase += " (" + es.Reason + ")"
	}
	b.field("Phase", phase)
	writeDeletion(&b, es)
	if len(es.Containers) > 0 {
		b.WriteString("Containers:\n")
	}
	for _, c := range es.Containers {
		line := fmt.Sprintf("  %s (%s): %s", c.Name, c.Type, c.State)
		switch {
		case c.Terminated != nil:
			line += ", " + formatTermination(c.Terminated)
		case c.WaitingReason != "":
			line += ", reason " + c.WaitingReason
		case c.RunningSince != nil:
			line += ", since " + formatTime(*c.RunningSince)
		}
		line += fmt.Sprintf(", restarts %d", c.RestartCount)
		b.WriteString(line + "\n")
		if c.LastTermination != nil {
			b.WriteString("      previous run: " + formatTermination(c.LastTermination) + "\n")
		}
	}
	return b.String()
}

// WriteEndState writes .keeplog/status.yaml (EndState) and .keeplog/ended.txt (EndedText) for pod, the object read at
// unpublish (still present, being deleted). Called again, it replaces both with the newer state.
func (w *Writer) WriteEndState(podDir string, pod *corev1.Pod, unpublishedAt time.Time) error {
	if pod == nil {
		return errors.New("write end state: no pod")
	}
	if err := checkPodDir(podDir, refOf(pod)); err != nil {
		return fmt.Errorf("write end state: %w", err)
	}
	return w.writeEndState(podDir, EndStateOf(pod, unpublishedAt))
}

// WriteEndStateUnavailable records the unpublish time when the pod object could not be read (already gone, API
// unreachable); why says what failed. It does not replace an end state written from the pod object.
func (w *Writer) WriteEndStateUnavailable(podDir string, ref store.PodRef, unpublishedAt time.Time, why error) error {
	if err := checkPodDir(podDir, ref); err != nil {
		return fmt.Errorf("write end state: %w", err)
	}
	reason := "unknown"
	if why != nil {
		reason = why.Error()
	}
	pd, err := openPodDir(podDir)
	if err != nil {
		return err
	}
	defer pd.Close()
	kd, err := openKeeplogDir(pd, w.opts.Clock.Now())
	if err != nil {
		return err
	}
	defer kd.Close()
	if old, err := readFileAt(kd, api.StatusYAMLFile, 4<<20); err == nil {
		var prev EndState
		if yaml.Unmarshal(old, &prev) == nil && prev.PodUnavailable == "" && len(prev.Containers) > 0 {
			return nil
		}
	}
	return w.writeEndState(podDir, EndState{APIVersion: api.EndStateAPIVersion, Kind: api.EndStateKind, Pod: ref,
		UnpublishedAt: unpublishedAt.UTC(), PodUnavailable: reason})
}

func (w *Writer) writeEndState(podDir string, es EndState) error {
	data, err := yaml.Marshal(es)
	if err != nil {
		return fmt.Errorf("encode end state of pod %s: %w", es.Pod, err)
	}
	return w.writeKeeplogFiles(podDir, w.opts.Clock.Now(), map[string][]byte{api.StatusYAMLFile: data, api.EndedTextFile: []byte(EndedText(es))},
		[]string{api.StatusYAMLFile, api.EndedTextFile})
}
