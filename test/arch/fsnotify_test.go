package arch

import (
	"strings"
	"testing"
)

// TestNodePluginDoesNotLinkFsnotify: internal/fswatch reads inotify itself (its doc.go says why) and has its own
// Op, so bin/keeplog links nothing of github.com/fsnotify/fsnotify. An import of fsnotify (or of a package that
// imports it) anywhere in cmd/keeplog's dependencies fails here.
func TestNodePluginDoesNotLinkFsnotify(t *testing.T) {
	linked := map[string]bool{}
	for _, d := range deps(t, "cmd/keeplog") {
		linked[d] = true
		if strings.HasPrefix(d, "github.com/fsnotify/") {
			t.Errorf("bin/keeplog links %s: watch with internal/fswatch", d)
		}
	}
	if !linked[module+"/internal/fswatch"] {
		t.Fatal("go list -deps cmd/keeplog does not list internal/fswatch: the listing is broken")
	}
}
