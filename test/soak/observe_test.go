//go:build soak

package soak

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/keeplog/keeplog/test/binary"
)

// trackVanish polls every unpublished pod directory every 250 ms. When one is gone it records when, checks at that
// moment which of its dumps the server lacks (the GC must never delete a directory before its dumps are archived),
// and deletes a persistent volume as csi-provisioner would once the GC released its PV.
func (s *soakEnv) trackVanish(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, p := range s.load.snapshot() {
			s.load.mu.Lock()
			pending := !p.unpublishedAt.IsZero() && p.vanishedAt.IsZero()
			s.load.mu.Unlock()
			if !pending {
				continue
			}
			if _, err := os.Lstat(s.kl.PodDir(p.pod)); !errors.Is(err, fs.ErrNotExist) {
				continue
			}
			missing := s.missingOnServer(p)
			s.load.mu.Lock()
			p.vanishedAt, p.missingAtVanish = time.Now(), missing
			s.load.mu.Unlock()
			if !p.ephemeral {
				p.deleteErr = s.deleteVolume(ctx, p)
			}
		}
	}
}

// missingOnServer lists the pod's dumps whose final name does not exist on the server.
func (s *soakEnv) missingOnServer(p *podRun) []string {
	var out []string
	s.load.mu.Lock()
	dumps := append([]dump(nil), p.dumps...)
	s.load.mu.Unlock()
	for _, d := range dumps {
		if _, err := os.Stat(s.sftp.Archived(s.t, p.pod.Ref(), d.rel)); err != nil {
			out = append(out, d.rel)
		}
	}
	return out
}

// fileState is what a status file's stat shows: a rewrite (temp name and rename) changes the inode, a write in
// place the mtime or size.
type fileState struct {
	ino   uint64
	mtime int64
	size  int64
	ok    bool
}

func statFile(p string) fileState {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return fileState{}
	}
	return fileState{ino: st.Ino, mtime: st.Mtim.Nano(), size: st.Size, ok: true}
}

// watchStatusFiles polls the archive status file of every pod directory under the root every 50 ms until ctx
// ends and counts the changes it sees (a lower bound on the rewrites: several in 50 ms count once).
func (s *soakEnv) watchStatusFiles(ctx context.Context) (changes int, files int) {
	last := map[string]fileState{}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		entries, _ := os.ReadDir(s.kl.Root)
		for _, e := range entries {
			if !e.IsDir() || e.Name()[0] == '.' {
				continue
			}
			for _, rel := range s.statusFiles {
				p := filepath.Join(s.kl.Root, e.Name(), rel)
				cur := statFile(p)
				prev, seen := last[p]
				if seen && cur != prev {
					changes++
				}
				last[p] = cur
			}
		}
		select {
		case <-ctx.Done():
			for _, st := range last {
				if st.ok {
					files++
				}
			}
			return changes, files
		case <-tick.C:
		}
	}
}

// deleteVolume is csi-provisioner's DeleteVolume once the PV is released; without an API server nothing releases
// it, so the soak calls it when the GC has deleted the volume's only directory.
func (s *soakEnv) deleteVolume(ctx context.Context, p *podRun) error {
	return binary.Retry(ctx, time.Minute, func(ctx context.Context) error { return s.csi.DeleteVolume(ctx, p.volumeID) })
}
