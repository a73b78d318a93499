package archiver

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FileID identifies a file on this node (device and inode).
type FileID struct {
	Dev uint64
	Ino uint64
}

// WriterChecker tells which of some files any process has open for writing.
type WriterChecker interface {
	OpenForWriting(files map[FileID]bool) (map[FileID]bool, error)
}

// ProcFS finds writers by scanning /proc/<pid>/fd and /proc/<pid>/fdinfo.
// It compares device and inode (stat through the fd link) rather than the
// link text: the text is a path in the writer's mount namespace (a
// container's), which does not match the host path.
type ProcFS struct {
	// Dir is the proc mount; "/proc" when empty. The node plugin needs the
	// host's PID namespace (hostPID) to see the pods' processes.
	Dir string
}

// OpenForWriting returns the subset of files some process has open with
// O_WRONLY or O_RDWR.
func (p ProcFS) OpenForWriting(files map[FileID]bool) (map[FileID]bool, error) {
	out := map[FileID]bool{}
	if len(files) == 0 {
		return out, nil
	}
	dir := p.Dir
	if dir == "" {
		dir = "/proc"
	}
	procs, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, pe := range procs {
		if _, err := strconv.Atoi(pe.Name()); err != nil {
			continue
		}
		fdDir := dir + "/" + pe.Name() + "/fd"
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // exited, or a kernel thread
		}
		for _, fe := range fds {
			var st unix.Stat_t
			if err := unix.Stat(fdDir+"/"+fe.Name(), &st); err != nil {
				continue
			}
			id := FileID{Dev: st.Dev, Ino: st.Ino}
			if !files[id] || out[id] {
				continue
			}
			flags, ok := fdFlags(dir + "/" + pe.Name() + "/fdinfo/" + fe.Name())
			if !ok {
				// Cannot tell: be safe and treat it as a writer.
				out[id] = true
				continue
			}
			if acc := flags & unix.O_ACCMODE; acc == unix.O_WRONLY || acc == unix.O_RDWR {
				out[id] = true
			}
		}
	}
	return out, nil
}

// fdFlags parses the octal "flags:" line of /proc/<pid>/fdinfo/<fd>.
func fdFlags(file string) (int, bool) {
	f, err := os.Open(file)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			if err != nil {
				return 0, false
			}
			return int(n), true
		}
	}
	return 0, false
}
