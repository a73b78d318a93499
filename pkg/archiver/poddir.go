package archiver

import "github.com/keeplog/keeplog/pkg/store"

// podDir is a pod directory as the archiver carries it once discovered: its name in the root
// (<namespace>_<pod>_<uid>) and the pod that name says it belongs to, parsed once. The watcher's maps, the settler,
// the status writer and the journal's items hold it, so nothing after discovery parses the name again (test/arch
// checks that).
type podDir struct {
	name string
	ref  store.PodRef
}

// parsePodDir is the one parser of pod directory names in the archiver. It is called in two places only: discover,
// and the journal when an item enters it by name alone (read from disk at start, or Put by a test).
func parsePodDir(name string) (store.PodRef, error) { return store.ParsePodDirName(name) }

// discover is where a name from the root becomes a podDir (main loop only): the root's listing, a watch event, or a
// name the archiver was told of (MarkPublished, MarkUnpublished, an Archived check asking for a walk). false when
// the name is not a pod directory's; the caller skips it. A watched pod directory's events (thousands a second on
// a busy node) find it in a.known, without parsing.
func (a *Archiver) discover(name string) (podDir, bool) {
	if pod, ok := a.known[name]; ok {
		return pod, true
	}
	ref, err := parsePodDir(name)
	return podDir{name: name, ref: ref}, err == nil
}

// podRef is the item's pod, parsed when it entered the journal; the error says its directory name is not a pod's.
func (it *Item) podRef() (store.PodRef, error) { return it.pod, it.podErr }

// podDir is the item's pod directory with the pod parsed when it entered the journal.
func (it *Item) podDir() podDir { return podDir{name: it.PodDir, ref: it.pod} }
