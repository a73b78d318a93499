package dump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/keeplog/keeplog/internal/safefs"
	"github.com/keeplog/keeplog/internal/units"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/policy"
)

// trigger is why a dump is taken.
type trigger struct {
	manual bool   // dump-requested: bypasses firstOnly and the cooldown, not the disk check or the cluster slot
	mem    Memory // the reading that crossed the threshold (zero for a manual request)
	why    string
}

// start marks the pod busy and takes the dump in the background. Caller holds mu.
func (m *Manager) start(ctx context.Context, t *tracked, pod *corev1.Pod, spec Spec, tr trigger) {
	if spec.Method == MethodExec && m.deps.Exec == nil {
		m.skip(t, tr.manual, DecisionSkipUnsupported, tr.why+"; not dumped: this node cannot run "+api.AnnotationDumpExec+
			" commands (no API access); use "+api.AnnotationDumpPort)
		return
	}
	t.busy = true
	m.m.inProgress.Inc()
	m.wg.Add(1)
	pod = pod.DeepCopy()
	go func() {
		defer m.wg.Done()
		m.dump(ctx, t, pod, spec, tr)
		m.mu.Lock()
		t.busy = false
		m.mu.Unlock()
		m.m.inProgress.Dec()
		select { // look at the pod again now: a request may be waiting
		case m.poke <- struct{}{}:
		default:
		}
	}()
}

// dump runs the gates that wait (disk, cluster slot), asks the pod for the dump and holds the slot until the dump
// file is finished and archived, or the timeout.
func (m *Manager) dump(ctx context.Context, t *tracked, pod *corev1.Pod, spec Spec, tr trigger) {
	podDir := filepath.Join(m.cfg.Root, t.dir)
	if tr.manual { // for the disk check
		if cid := ContainerID(pod, spec.Container); cid != "" {
			tr.mem, _ = m.deps.Memory.Read(string(pod.UID), cid)
		}
	}
	// The dump of a heap about as large as the limit (or, without one, the working set) must fit.
	need := tr.mem.Limit
	if need == 0 {
		need = tr.mem.WorkingSet
	}
	if free, err := m.deps.FreeBytes(m.cfg.Root); err != nil {
		m.deps.Log.Error(err, "Could not read the free space of the root; dumping anyway", "root", m.cfg.Root)
	} else if free < need {
		m.locked(func() {
			m.skip(t, tr.manual, DecisionSkipLowDisk, fmt.Sprintf("%s; not dumped: %s free on the node's keeplog filesystem, less than the %s the dump may need",
				tr.why, units.Bytes(free), units.Bytes(need)))
		})
		return
	}

	held := ctx
	if m.deps.Semaphore != nil {
		h, release, err := m.deps.Semaphore.AcquireWithin(ctx, m.cfg.SlotWait)
		if err != nil {
			if ctx.Err() == nil {
				m.locked(func() {
					m.skip(t, tr.manual, DecisionSkipNoSlot, fmt.Sprintf("%s; not dumped: no cluster-wide dump slot free within %s (other dumps are under way): %v",
						tr.why, m.cfg.SlotWait, err))
				})
			}
			return
		}
		defer release()
		held = h
	}
	dctx, cancel := context.WithTimeout(held, m.cfg.Timeout)
	defer cancel()

	pol := m.archivePolicy(t.dir)
	before := dumpFiles(podDir, pol)
	start := m.deps.Clock.Now()
	m.locked(func() {
		cs := t.st.container(spec.Container)
		cs.LastDump = start
		if !tr.manual {
			cs.Dumped = true
		}
		m.save(t, t.st)
		t.reported = nil
	})
	m.m.decisions.WithLabelValues(DecisionTriggered).Inc()
	m.event(t.ref, corev1.EventTypeNormal, api.ReasonDumpTriggered, fmt.Sprintf("%s: asking for a heap dump (%s)", tr.why, describe(spec)))

	out, err := m.request(dctx, pod, spec)
	if err != nil {
		m.m.decisions.WithLabelValues(DecisionFailed).Inc()
		m.locked(func() {
			if !tr.manual { // a failed request does not use up firstOnly; the cooldown still applies
				t.st.container(spec.Container).Dumped = false
				m.save(t, t.st)
			}
		})
		m.event(t.ref, corev1.EventTypeWarning, api.ReasonDumpFailed, fmt.Sprintf("heap dump request (%s) failed: %v", describe(spec), err))
		return
	}
	m.deps.Log.V(2).Info("Heap dump requested", "pod", t.ref.String(), "answer", out)
	files, err := m.waitFinished(dctx, podDir, pol, before)
	if err != nil {
		m.m.decisions.WithLabelValues(DecisionTimedOut).Inc()
		m.event(t.ref, corev1.EventTypeWarning, api.ReasonDumpTimedOut, fmt.Sprintf("heap dump requested %s ago (%s): %v",
			m.deps.Clock.Since(start).Round(time.Second), describe(spec), err))
		return
	}
	what := "written"
	if m.deps.Pending != nil && !pol.Off {
		what = "written and archived"
	}
	m.m.decisions.WithLabelValues(DecisionFinished).Inc()
	m.event(t.ref, corev1.EventTypeNormal, api.ReasonDumpFinished, fmt.Sprintf("heap dump %s %s in %s", strings.Join(files, ", "), what,
		m.deps.Clock.Since(start).Round(time.Second)))
}

func (m *Manager) locked(fn func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fn()
}

func (m *Manager) archivePolicy(dir string) policy.ArchivePolicy {
	if m.deps.Archive == nil {
		return policy.ArchivePolicy{Off: true}
	}
	return m.deps.Archive(dir)
}

func describe(s Spec) string {
	if s.Method == MethodExec {
		return fmt.Sprintf("exec in container %s: %q", s.ExecContainer, s.Command)
	}
	return fmt.Sprintf("HTTP %s port %d path %s", s.HTTPMethod, s.Port, s.Path)
}

// maxAnswer is how much of the pod's answer is kept for the log and error messages.
const maxAnswer = 512

// request asks the pod for the dump and returns the start of its answer.
func (m *Manager) request(ctx context.Context, pod *corev1.Pod, spec Spec) (string, error) {
	if spec.Method == MethodExec {
		out, err := m.deps.Exec.Exec(ctx, pod.Namespace, pod.Name, spec.ExecContainer, []string{"sh", "-c", spec.Command})
		if len(out) > maxAnswer {
			out = out[:maxAnswer]
		}
		if err != nil {
			return out, fmt.Errorf("%w; output: %q", err, out)
		}
		return out, nil
	}
	host := pod.Status.PodIP
	if pod.Spec.HostNetwork && m.cfg.HostNetworkAddress != "" {
		host = m.cfg.HostNetworkAddress
	}
	if host == "" {
		return "", errors.New("the pod has no IP yet")
	}
	url := "http://" + net.JoinHostPort(host, strconv.Itoa(spec.Port)) + spec.Path
	req, err := http.NewRequestWithContext(ctx, spec.HTTPMethod, url, nil)
	if err != nil {
		return "", fmt.Errorf("request %s %s: %w", spec.HTTPMethod, url, err)
	}
	req.Header.Set("User-Agent", "keeplog-dump")
	resp, err := m.deps.HTTP.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return string(body), fmt.Errorf("%s %s answered %s: %q", spec.HTTPMethod, url, resp.Status, body)
	}
	return string(body), nil
}

// fileState is what tells a file's writes apart.
type fileState struct {
	size  int64
	mtime int64 // ns
}

// dumpFiles lists the files of a pod directory that are dumps (the archive patterns, whether or not archiving is
// on), by path relative to the pod directory. keeplog's own .keeplog directory is left out.
func dumpFiles(podDir string, pol policy.ArchivePolicy) map[string]fileState {
	pol.Off = false
	out := map[string]fileState{}
	d, err := safefs.OpenDir(podDir)
	if err != nil {
		return out
	}
	defer d.Close()
	// Never through a symlink, never into another mount, nothing opened but directories: the pod wrote this tree.
	_, _ = safefs.Walk(d, "", func(e safefs.Entry) bool {
		if e.Kind() == unix.S_IFDIR {
			return e.Rel != api.KeeplogDir
		}
		if e.Kind() == unix.S_IFREG && strings.Contains(e.Rel, "/") && pol.Matches(e.Rel) {
			out[e.Rel] = fileState{size: e.Stat.Size, mtime: e.Stat.Mtim.Nano()}
		}
		return true
	})
	return out
}

// freeBytes is the space an unprivileged writer can still use on path's filesystem.
func freeBytes(path string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	return st.Bavail * uint64(st.Bsize), nil
}
