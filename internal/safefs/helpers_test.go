package safefs

import (
	"os"
	"testing"
)

// requireRoot skips tests that mknod, mount or watch device nodes when not run as root (they run as root in CI).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mknod, mount)")
	}
}
