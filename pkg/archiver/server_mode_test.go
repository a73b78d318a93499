package archiver

// The modes of what keeplog creates on a real OpenSSH sshd.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keeplog/keeplog/pkg/api"
)

// Dumps hold secrets: every file keeplog creates on the server, the temporary one being written included, is
// readable by its owner only from the moment it exists.
func TestServerFilesAreOwnerOnly(t *testing.T) {
	e := newEnv(t)
	pod := e.pod("ns", "secret")
	writeRandom(t, filepath.Join(e.root, pod, "app", "java_pid1.hprof"), 4<<20, 1)
	cfg := e.config()
	cfg.BytesPerSecond = 2 << 20 // two seconds of upload, to see the temporary file
	e.start(cfg, Deps{})
	dst := e.archived(pod, "app/java_pid1.hprof")
	var tmp string
	waitFor(t, time.Minute, "the temporary file on the server", func() bool {
		tmp = e.serverFileWith(api.TempFileMarker)
		return tmp != "" || exists(dst)
	})
	if tmp == "" {
		t.Fatal("the upload finished before its temporary file was seen: nothing to check")
	}
	if err := checkOwnerOnly(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Error(err)
	}
	waitFor(t, time.Minute, "the dump on the server", func() bool { return exists(dst) })
	for _, p := range []string{dst, dst + manifestSuffix} {
		if err := checkOwnerOnly(p); err != nil {
			t.Error(err)
		}
	}
}

// serverFileWith returns the first file on the server whose path contains s, as a path on this machine.
func (e *env) serverFileWith(s string) string {
	for _, f := range e.serverFiles() {
		if strings.Contains(f, s) {
			return filepath.Join(e.srv.DataDir, f)
		}
	}
	return ""
}

func checkOwnerOnly(p string) error {
	st, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if m := st.Mode().Perm(); m != 0o600 {
		return fmt.Errorf("%s has mode %o on the server, want 600", p, m)
	}
	return nil
}
