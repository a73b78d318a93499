package podinfo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/keeplog/keeplog/internal/safefs"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/store"
)

// PodContext is what the publish call says about the pod, without asking the API.
type PodContext struct {
	Pod            store.PodRef
	ServiceAccount string
}

// PodContextFromVolumeContext reads the podInfoOnMount keys. ok is false when there are none; an error when they are
// present but invalid.
func PodContextFromVolumeContext(vc map[string]string) (pc PodContext, ok bool, err error) {
	ref := store.PodRef{Namespace: vc[api.VolumeContextPodNamespace], Name: vc[api.VolumeContextPodName], UID: vc[api.VolumeContextPodUID]}
	if ref == (store.PodRef{}) {
		return PodContext{}, false, nil
	}
	if err := ref.Validate(); err != nil {
		return PodContext{}, false, fmt.Errorf("volume context: %w", err)
	}
	return PodContext{Pod: ref, ServiceAccount: vc[api.VolumeContextServiceAccount]}, true, nil
}

// Options configures a Writer.
type Options struct {
	// KeepEnvValues writes literal env values into pod.yaml; by default they are replaced by Redacted.
	KeepEnvValues bool
	// Clock dates what is written (nil: the real clock).
	Clock clock.PassiveClock
	// Owners resolves the owner chain for pod.txt (see APIOwnerLookup); nil lists the pod's direct owner only.
	Owners OwnerLookup
}

// Writer writes keeplog's files into pod directories. It is safe for concurrent use; each file is replaced atomically.
type Writer struct {
	opts Options
}

// NewWriter returns a Writer with opts.
func NewWriter(opts Options) *Writer {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Writer{opts: opts}
}

// checkPodDir refuses writing a pod's files into another pod's directory.
func checkPodDir(podDir string, ref store.PodRef) error {
	if err := ref.Validate(); err != nil {
		return err
	}
	if filepath.Base(podDir) != ref.DirName() {
		return fmt.Errorf("directory %s is not the directory of pod %s (want %s)", podDir, ref, ref.DirName())
	}
	return nil
}

func refOf(pod *corev1.Pod) store.PodRef {
	return store.PodRef{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}
}

// WritePodMetadata writes .keeplog/pod.yaml (redacted, see RedactPod) and .keeplog/pod.txt (see Summary) into podDir,
// which must be the pod's own directory (<root>/<namespace>_<name>_<uid>). ctx bounds the owner lookups; a failed
// lookup is written into pod.txt, not returned.
func (w *Writer) WritePodMetadata(ctx context.Context, podDir string, pod *corev1.Pod) error {
	if pod == nil {
		return errors.New("write pod metadata: no pod")
	}
	if err := checkPodDir(podDir, refOf(pod)); err != nil {
		return fmt.Errorf("write pod metadata: %w", err)
	}
	data, err := PodYAML(pod, w.opts.KeepEnvValues)
	if err != nil {
		return err
	}
	now := w.opts.Clock.Now()
	text := Summary(pod, OwnerChain(ctx, w.opts.Owners, pod), now)
	return w.writeKeeplogFiles(podDir, now, map[string][]byte{api.PodYAMLFile: data, api.PodTextFile: []byte(text)}, []string{api.PodYAMLFile, api.PodTextFile})
}

// WriteMinimal writes .keeplog/pod.txt from the publish context alone, for when the API is unreachable. It does
// nothing when pod.yaml is there already (a complete description is never replaced by a minimal one); call
// WritePodMetadata later to complete it.
func (w *Writer) WriteMinimal(podDir string, pc PodContext) error {
	if err := checkPodDir(podDir, pc.Pod); err != nil {
		return fmt.Errorf("write minimal pod metadata: %w", err)
	}
	pd, err := openPodDir(podDir)
	if err != nil {
		return err
	}
	defer pd.Close()
	now := w.opts.Clock.Now()
	kd, err := openKeeplogDir(pd, now)
	if err != nil {
		return err
	}
	defer kd.Close()
	if safefs.ExistsAt(kd, api.PodYAMLFile) {
		return nil
	}
	return writeFileAt(kd, api.PodTextFile, []byte(MinimalSummary(pc, now)))
}

// HasPodMetadata reports whether podDir holds a complete description (pod.yaml), e.g. to decide after a plugin
// restart whether the background completion is still needed.
func HasPodMetadata(podDir string) bool {
	pd, err := openPodDir(podDir)
	if err != nil {
		return false
	}
	defer pd.Close()
	kd, err := safefs.OpenDirAt(pd, api.KeeplogDir, false)
	if err != nil {
		return false
	}
	defer kd.Close()
	return safefs.ExistsAt(kd, api.PodYAMLFile)
}

func (w *Writer) writeKeeplogFiles(podDir string, now time.Time, files map[string][]byte, order []string) error {
	pd, err := openPodDir(podDir)
	if err != nil {
		return err
	}
	defer pd.Close()
	kd, err := openKeeplogDir(pd, now)
	if err != nil {
		return err
	}
	defer kd.Close()
	for _, name := range order {
		if err := writeFileAt(kd, name, files[name]); err != nil {
			return err
		}
	}
	return nil
}

// readFileAt reads a regular file below dir without following a symlink, at most limit bytes.
func readFileAt(dir *os.File, name string, limit int64) ([]byte, error) {
	f, err := openRegularAt(dir, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", f.Name(), limit)
	}
	return data, nil
}
