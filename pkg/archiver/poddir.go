package archiver

import "github.com/keeplog/keeplog/pkg/store"

// parsePodDir is the one place the archiver parses a pod directory name (<namespace>_<pod>_<uid>), at discovery:
// the root's listing and a watch event (which skip what does not parse), a file that becomes a candidate (the
// settler), and an item entering the journal (journalled at finish, or read at start). From there the parsed
// pod travels with the candidate and the item to the upload, the record and the pod's Events.
func parsePodDir(name string) (store.PodRef, error) { return store.ParsePodDirName(name) }

// podRef is the item's pod, parsed when it entered the journal; the error says its directory name is not a pod's.
func (it *Item) podRef() (store.PodRef, error) { return it.pod, it.podErr }
