package fswatch

import "strings"

// Op is what happened to a path: a set of the bits below (a name's ops in one Batch are joined).
type Op uint32

// The ops, with fsnotify's meanings.
const (
	// Create: a file or directory was created, or moved into a watched directory.
	Create Op = 1 << iota
	// Write: a file's content changed (never a directory's entries).
	Write
	// Remove: a file or directory was deleted (a watched directory itself too).
	Remove
	// Rename: a file or directory was moved away (its new name, if watched, gets a Create).
	Rename
	// Chmod: attributes changed (mode, owner, times, link count).
	Chmod
)

// Has reports whether o and h share an op (as fsnotify's Has does).
func (o Op) Has(h Op) bool { return o&h != 0 }

// String is the set's names joined with |, as fsnotify prints them (e.g. CREATE|WRITE).
func (o Op) String() string {
	var names []string
	for i, n := range [...]string{"CREATE", "WRITE", "REMOVE", "RENAME", "CHMOD"} {
		if o&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "[no events]"
	}
	return strings.Join(names, "|")
}
