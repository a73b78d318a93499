package usage

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/keeplog/keeplog/internal/fstest"
)

// A pod can swap a file for a device node or a FIFO at any time, and opening a device runs its driver (a watchdog
// arms, a tape rewinds, a FIFO blocks). The enforcer and IsImmutable opened paths O_RDONLY|O_NONBLOCK before knowing
// their type; now a name is opened only as a directory or as a regular file proven on an O_PATH descriptor. A real
// IN_OPEN watch on each node must stay silent through Block, Unblock, setImmutable and IsImmutable.
func TestEnforcerNeverOpensDevicesOrFIFOs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mknod, the immutable attribute)")
	}
	root := t.TempDir()
	pod := filepath.Join(root, "ns_pod_uid")
	writeFile(t, filepath.Join(pod, "app", "app.log"), 100)
	nodes := map[string]int{
		"chardev": fstest.WatchedNode(t, filepath.Join(pod, "app", "chardev"), unix.S_IFCHR, int(unix.Mkdev(1, 3))),
		"fifo":    fstest.WatchedNode(t, filepath.Join(pod, "app", "fifo"), unix.S_IFIFO, 0),
	}
	e, err := NewAttrEnforcer(filepath.Join(root, ".keeplog", "usage", "blocked"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Unblock(pod) })
	blockErr := e.Block(pod) // the attribute may be unsupported here; what matters is what was opened
	for name := range nodes {
		p := filepath.Join(pod, "app", name)
		if err := setImmutable(p, false, true); err == nil {
			t.Errorf("setImmutable(%s) succeeded on a %s", p, name)
		}
		if _, err := IsImmutable(p); err == nil {
			t.Errorf("IsImmutable(%s) succeeded on a %s", p, name)
		}
	}
	if err := e.Unblock(pod); err != nil && blockErr == nil {
		t.Errorf("Unblock: %v", err)
	}
	for name, w := range nodes {
		if fstest.Opened(t, w) {
			t.Errorf("the %s was opened (IN_OPEN)", name)
		}
	}
	if blockErr == nil {
		if on, err := IsImmutable(filepath.Join(pod, "app", "app.log")); err != nil || on {
			t.Errorf("app.log after Unblock: immutable %v, %v", on, err)
		}
	}
}
