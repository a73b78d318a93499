package fstest

import (
	"bytes"
	"fmt"
	"os"
)

// InotifyWatches counts the inotify watches process pid holds, as the kernel lists them (/proc/<pid>/fdinfo of
// each inotify descriptor): what a watcher really costs, whatever the process thinks it watches.
func InotifyWatches(pid int) (int, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil || target != "anon_inode:inotify" {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		n += bytes.Count(info, []byte("\ninotify wd:"))
	}
	return n, nil
}
