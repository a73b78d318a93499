package framework

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// heapAppScript runs busybox httpd on 127.0.0.1:PORT (the pod has hostNetwork) with two CGI scripts:
//   - /cgi-bin/dump writes a 4 MiB "heap dump" /logs/app/heap-<n>.hprof in two parts 2 s apart and logs
//     "start <uptime> <file>" and "end <uptime> <file>" to /logs/app/dumps.log (uptime: /proc/uptime, the node's,
//     so two pods' logs compare);
//   - /cgi-bin/hog?<MiB> writes MiB into the memory-backed emptyDir at /hog, which the kernel charges to the
//     container's memory cgroup as shmem (not reclaimable without swap: it stays in the working set), and logs
//     "hog <uptime> <MiB>".
const heapAppScript = `set -e
mkdir -p /www/cgi-bin
cat > /www/cgi-bin/dump <<'EOF'
#!/bin/sh
up() { cut -d' ' -f1 /proc/uptime; }
n=$(ls /logs/app/ | grep -c '\.hprof$' || true)
f=/logs/app/heap-$((n+1)).hprof
echo "start $(up) $f" >> /logs/app/dumps.log
dd if=/dev/urandom of=$f bs=1024 count=2048 2>/dev/null
sleep 2
dd if=/dev/urandom bs=1024 count=2048 2>/dev/null >> $f
echo "end $(up) $f" >> /logs/app/dumps.log
printf 'Content-Type: text/plain\r\n\r\nwrote %s\n' $f
EOF
cat > /www/cgi-bin/hog <<'EOF'
#!/bin/sh
dd if=/dev/zero of=/hog/fill bs=1048576 count=$QUERY_STRING 2>/dev/null
echo "hog $(cut -d' ' -f1 /proc/uptime) $QUERY_STRING" >> /logs/app/dumps.log
printf 'Content-Type: text/plain\r\n\r\nhogging %s MiB\n' $QUERY_STRING
EOF
chmod +x /www/cgi-bin/dump /www/cgi-bin/hog
touch /logs/app/dumps.log
exec httpd -f -p 127.0.0.1:PORT -h /www
`

// HeapApp is a pod made by HeapAppPod.
type HeapApp struct {
	Pod  *corev1.Pod
	Port int
}

// FreeLocalPort returns a TCP port on 127.0.0.1 that was free when checked (the test's hostNetwork pods share the
// node's ports).
func FreeLocalPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// HeapAppPod runs the heap app (see heapAppScript) with a keeplog CSI inline volume at /logs, a memory limit of
// limitMiB and the dump annotations (dump-port and dump-path are set to the app's endpoint unless ann has dump-exec;
// ann adds or overrides).
// With guaranteed, CPU and memory requests equal the limits (QoS Guaranteed: its cgroup is directly under kubepods).
func (e *Env) HeapAppPod(ctx context.Context, ns, name string, limitMiB int, guaranteed bool, ann map[string]string) (*HeapApp, error) {
	port, err := FreeLocalPort()
	if err != nil {
		return nil, err
	}
	vol := corev1.Volume{Name: "logs", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: DriverName}}}
	spec := e.PodSpec(strings.ReplaceAll(heapAppScript, "PORT", strconv.Itoa(port)), vol)
	hogSize := resource.MustParse(fmt.Sprintf("%dMi", limitMiB))
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "hog", VolumeSource: corev1.VolumeSource{
		EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &hogSize}}})
	c := &spec.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "hog", MountPath: "/hog"})
	limits := corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(fmt.Sprintf("%dMi", limitMiB))}
	if guaranteed {
		limits[corev1.ResourceCPU] = resource.MustParse("100m")
		c.Resources.Requests = limits
	}
	c.Resources.Limits = limits
	all := map[string]string{"keeplog.csi.io/dump-port": strconv.Itoa(port), "keeplog.csi.io/dump-path": "/cgi-bin/dump"}
	if _, exec := ann["keeplog.csi.io/dump-exec"]; exec { // asked by a command (e.g. sh /www/cgi-bin/dump), not HTTP
		all = map[string]string{}
	}
	for k, v := range ann {
		all[k] = v
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: all}, Spec: spec}
	if _, err := e.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	p, err := e.WaitPodRunning(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	app := &HeapApp{Pod: p, Port: port}
	if err := WaitFileContains(ctx, filepath.Join(e.PodDir(p), "app", "dumps.log"), ""); err != nil {
		return nil, err
	}
	// httpd listens once the script has exec'd it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			return app, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("heap app %s/%s does not listen on 127.0.0.1:%d: %w", ns, name, port, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Hog makes the app's container hold mib MiB more (memory-backed emptyDir).
func (a *HeapApp) Hog(ctx context.Context, mib int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/hog?%d", a.Port, mib)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return nil
}

// DumpRecord is one dump the app wrote: start and end in the node's uptime seconds.
type DumpRecord struct {
	File       string
	Start, End float64
}

// HeapAppLog is the app's dumps.log, parsed: its dumps (in order) and when its hogs finished.
type HeapAppLog struct {
	Dumps []DumpRecord
	Hogs  []float64
}

// ReadHeapAppLog parses the app's log from its keeplog directory on the node.
func (e *Env) ReadHeapAppLog(a *HeapApp) (HeapAppLog, error) {
	var out HeapAppLog
	path := filepath.Join(e.PodDir(a.Pod), "app", "dumps.log")
	data, err := os.ReadFile(path)
	if err != nil {
		return out, err
	}
	open := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		t, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return out, fmt.Errorf("%s: line %q: %w", path, line, err)
		}
		switch f[0] {
		case "hog":
			out.Hogs = append(out.Hogs, t)
		case "start":
			open[f[2]] = len(out.Dumps)
			out.Dumps = append(out.Dumps, DumpRecord{File: f[2], Start: t})
		case "end":
			i, ok := open[f[2]]
			if !ok {
				return out, fmt.Errorf("%s: end without start: %q", path, line)
			}
			out.Dumps[i].End = t
		}
	}
	return out, nil
}

// Uptime is the node's /proc/uptime in seconds, the clock of the heap app's log.
func Uptime() (float64, error) {
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(strings.Fields(string(data))[0], 64)
}
