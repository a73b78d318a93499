package retrieval

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"time"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/retrieval/wire"
	"github.com/keeplog/keeplog/pkg/store"
)

// maxStatusFile bounds what is read of an archive status file (keeplog's own, one line per matching file).
const maxStatusFile = 4 << 20

// expiry is when the directory's retention ends, as the garbage collector computes it: its unpublish time plus its
// policy's retention (pod annotation as recorded > StorageClass parameter > --retain-for, capped by
// --max-retain-for). Nil while the pod's volume is published. After it the collector deletes the directory once
// it is archived.
func expiry(v *store.Volume, d store.PodDir, defaults policy.Defaults) *time.Time {
	if d.UnpublishedAt.IsZero() {
		return nil
	}
	p, _ := policy.Resolve(v.Parameters, d.Annotations, defaults)
	t := d.UnpublishedAt.Add(p.RetainFor)
	return &t
}

// statusFile is the part of the archiver's status file (api.ArchiveStatusPath) the listing summarizes.
type statusFile struct {
	Updated time.Time `json:"updated"`
	Files   []struct {
		State string `json:"state"`
	} `json:"files"`
}

// archiveState summarizes the pod directory's archive status file: how many files in each state. Nil when there is
// none (archiving off, or nothing matched yet). The file is keeplog's own, in its root-owned .keeplog/, but it is
// still opened as everything in a pod directory is: no symlink, regular file only, bounded read.
func archiveState(podDir *os.File) (*wire.ArchiveState, error) {
	f, _, err := openIn(podDir, []string{api.KeeplogDir, api.ArchiveStatusFile})
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var sf statusFile
	if err := json.NewDecoder(io.LimitReader(f, maxStatusFile)).Decode(&sf); err != nil {
		return nil, err
	}
	st := &wire.ArchiveState{Updated: sf.Updated, Files: len(sf.Files), States: map[string]int{}}
	for _, fs := range sf.Files {
		st.States[fs.State]++
	}
	return st, nil
}
