package fstest

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// DuBytes is `du -s -B1 dir`: the bytes allocated at and below dir (st_blocks×512), each inode once, directories
// included; what keeplog's usage figures are checked against.
func DuBytes(t testing.TB, dir string) int64 {
	t.Helper()
	out, err := exec.Command("du", "-s", "-B1", dir).Output()
	if err != nil {
		t.Fatalf("du -s -B1 %s: %v", dir, err)
	}
	n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	if err != nil {
		t.Fatalf("du -s -B1 %s: %q: %v", dir, out, err)
	}
	return n
}
