//go:build soak

package soak

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/keeplog/keeplog/test/binary"
)

// dump is one file written into a pod's volume that matches the default archive patterns.
type dump struct {
	rel   string // inside the pod directory: <container>/<dirs...>/<name>
	depth int    // directories between the pod directory and the file, the container's included
	size  int64
	sha   string
}

// podRun is one pod's life: published, written to, unpublished, its directory deleted by the GC.
type podRun struct {
	pod       binary.Pod
	volumeID  string
	ephemeral bool
	target    string
	resident  bool // published for the whole run (its status file exists while idle)
	// holdsMount: something is mounted inside its directory, which the GC must therefore keep
	holdsMount bool
	dumps      []dump
	swapped    []swappedNode // dumps replaced by a device or FIFO once settled
	late       []string      // dumps written into the pod directory after its unpublish (also in dumps)
	noise      []string      // files matching no pattern: never uploaded

	unpublishedAt time.Time
	vanishedAt    time.Time
	// missingAtVanish are the dumps the server did not have when the directory was seen gone.
	missingAtVanish []string
	deleteErr       error
}

// workload makes pods and dumps; every pod it made is in pods.
type workload struct {
	s     *soakEnv
	mu    sync.Mutex
	pods  []*podRun
	n     int // pods made
	nDump int
}

func (w *workload) add(p *podRun) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pods = append(w.pods, p)
}

// snapshot is the pods so far.
func (w *workload) snapshot() []*podRun {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*podRun(nil), w.pods...)
}

func (w *workload) next() (int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	return w.n, w.nDump
}

// newPod publishes a new pod's volume: 60 % persistent (CreateVolume, StorageClass parameter retainFor), the rest
// CSI inline ephemeral (the attribute in the volume context).
func (w *workload) newPod(ctx context.Context, rng *rand.Rand, resident bool) (*podRun, error) {
	return w.newPodWith(ctx, rng, resident, nil)
}

// newPodWith is newPod with further StorageClass parameters or volume attributes (extra).
func (w *workload) newPodWith(ctx context.Context, rng *rand.Rand, resident bool, extra map[string]string) (*podRun, error) {
	n, _ := w.next()
	p := &podRun{pod: binary.NewPod("soak", fmt.Sprintf("pod-%03d", n)), ephemeral: rng.IntN(10) >= 6, resident: resident}
	params := map[string]string{"retainFor": w.s.plan.retainFor.String()}
	for k, v := range extra {
		params[k] = v
	}
	if p.ephemeral {
		p.volumeID = binary.EphemeralVolumeID(p.pod, "logs")
	} else {
		err := binary.Retry(ctx, 2*time.Minute, func(ctx context.Context) (err error) {
			p.volumeID, err = w.s.csi.CreateVolume(ctx, "pvc-"+p.pod.UID, params)
			return err
		})
		if err != nil {
			return nil, err
		}
		params = nil
	}
	p.target = filepath.Join(w.s.work, "kubelet", "pods", p.pod.UID, "volumes", "kubernetes.io~csi", "logs", "mount")
	err := binary.Retry(ctx, 2*time.Minute, func(ctx context.Context) error {
		return w.s.csi.Publish(ctx, p.volumeID, p.target, p.pod, p.ephemeral, params)
	})
	if err != nil {
		return nil, err
	}
	w.add(p)
	return p, nil
}

// writeDump writes one dump at a random depth (1..45 directories) and size through the published target, as the
// container would.
func (w *workload) writeDump(rng *rand.Rand, p *podRun, idx int, depth int) error {
	w.mu.Lock()
	w.nDump++
	k := w.nDump
	w.mu.Unlock()
	size := logUniform(rng, 1<<10, w.s.plan.maxSize)
	if k%w.s.plan.bigEvery == 0 {
		size = w.s.plan.bigSize
	}
	container := []string{"app", "sidecar"}[rng.IntN(2)]
	dirs := []string{container}
	for i := 1; i < depth; i++ {
		dirs = append(dirs, fmt.Sprintf("d%02d", i))
	}
	dirs[len(dirs)-1] += fmt.Sprintf("-%d", idx) // each dump its own directory: no two share a name
	// Names matching the default patterns (*.hprof, core, core.*, hs_err_pid*.log).
	names := []string{"java_pid%d.hprof", "core", "core.%d", "hs_err_pid%d.log"}
	name := names[rng.IntN(len(names))]
	if strings.Contains(name, "%d") {
		name = fmt.Sprintf(name, 1000+k)
	}
	rel := path.Join(append(dirs, name)...)
	sha, err := binary.WriteFile(filepath.Join(p.target, filepath.FromSlash(rel)), size, uint64(k))
	if err != nil {
		return err
	}
	w.mu.Lock()
	p.dumps = append(p.dumps, dump{rel: rel, depth: depth, size: size, sha: sha})
	w.mu.Unlock()
	return nil
}

// writeNoise writes a log file no pattern matches.
func (w *workload) writeNoise(rng *rand.Rand, p *podRun) error {
	rel := path.Join("app", []string{"gc.log", "access.log", "app.hprof.txt"}[rng.IntN(3)])
	if _, err := binary.WriteFile(filepath.Join(p.target, rel), logUniform(rng, 1<<10, 1<<20), rng.Uint64()); err != nil {
		return err
	}
	w.mu.Lock()
	p.noise = append(p.noise, rel)
	w.mu.Unlock()
	return nil
}

// unpublish is kubelet's unmount once the pod's containers are gone.
func (w *workload) unpublish(ctx context.Context, p *podRun) error {
	err := binary.Retry(ctx, 2*time.Minute, func(ctx context.Context) error {
		return w.s.csi.Unpublish(ctx, p.volumeID, p.target)
	})
	if err != nil {
		return err
	}
	_ = os.Remove(p.target) // kubelet removes the emptied mount point
	w.mu.Lock()
	p.unpublishedAt = time.Now()
	w.mu.Unlock()
	return nil
}

// worker runs pods one after the other until end: publish, 1-3 dumps and a log file, a pause, unpublish; every
// third pod gets one more dump in its directory after the unpublish (retained_test.go).
func (w *workload) worker(ctx context.Context, seed uint64, end time.Time) error {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for n := 0; time.Now().Before(end) && ctx.Err() == nil; n++ {
		p, err := w.newPod(ctx, rng, false)
		if err != nil {
			return err
		}
		for i := range 1 + rng.IntN(3) {
			if err := w.writeDump(rng, p, i, 1+rng.IntN(45)); err != nil {
				return err
			}
		}
		if err := w.writeNoise(rng, p); err != nil {
			return err
		}
		if rng.IntN(3) == 0 {
			if err := w.swapDump(rng, p, nodeKind(rng.IntN(2))); err != nil {
				return err
			}
		}
		sleep(ctx, time.Duration(rng.IntN(3000))*time.Millisecond)
		if err := w.unpublish(ctx, p); err != nil {
			return err
		}
		if n%3 == 1 {
			if err := w.writeLateDump(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func logUniform(rng *rand.Rand, lo, hi int64) int64 {
	l, h := math.Log(float64(lo)), math.Log(float64(hi))
	return int64(math.Exp(l + rng.Float64()*(h-l)))
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
