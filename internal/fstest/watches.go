package fstest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// InotifyWatches counts the inotify watches process pid holds, as the kernel lists them (/proc/<pid>/fdinfo of
// each inotify descriptor): what a watcher really costs, whatever the process thinks it watches.
func InotifyWatches(pid int) (int, error) {
	n := 0
	err := inotifyInfos(pid, func(info []byte) { n += bytes.Count(info, []byte("\ninotify wd:")) })
	return n, err
}

// Watched is a file (a directory, as keeplog watches them) an inotify watch is on: its device (as
// unix.Stat_t.Dev has it) and inode.
type Watched struct {
	Dev, Ino uint64
}

// InotifyWatched lists the files process pid's inotify watches are on, as the kernel lists them: a test can ask
// whether one directory is watched (stat it and look for its Dev and Ino), not only how many are.
func InotifyWatched(pid int) (map[Watched]bool, error) {
	out := map[Watched]bool{}
	var bad error
	err := inotifyInfos(pid, func(info []byte) {
		sc := bufio.NewScanner(bytes.NewReader(info))
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "inotify wd:")
			if !ok {
				continue
			}
			var wd int
			var ino, sdev uint64
			// inotify wd:1a ino:a0001 sdev:800001 mask:... (fs/notify/fdinfo.c: every number in hex; sdev is the
			// kernel's dev_t, major<<20|minor)
			if _, err := fmt.Sscanf(line, "%x ino:%x sdev:%x", &wd, &ino, &sdev); err != nil {
				bad = fmt.Errorf("pid %d: inotify fdinfo line %q: %w", pid, sc.Text(), err)
				continue
			}
			out[Watched{Dev: unix.Mkdev(uint32(sdev>>20), uint32(sdev&0xfffff)), Ino: ino}] = true
		}
	})
	if err == nil {
		err = bad
	}
	return out, err
}

// inotifyInfos calls f with the fdinfo of each inotify descriptor of pid.
func inotifyInfos(pid int, f func(info []byte)) error {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return err
	}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil || target != "anon_inode:inotify" {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		f(info)
	}
	return nil
}
