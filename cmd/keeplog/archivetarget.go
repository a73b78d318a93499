package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/go-logr/logr"

	"github.com/keeplog/keeplog/pkg/archiver"
)

// reloadingDialer reads the archive target Secret again before each dial and, when its content changed, dials with
// a dialer built from the new content: a rotated password, key, knownHosts, endpoint, bucket or S3 credentials apply
// to the next attempt without a restart (kubelet replaces a mounted Secret's files in place, and a wrong Secret is
// usually fixed by editing it). Two things the archiver was built with need a restart: the target's type and the
// base directory remote names are made under (SFTP baseDir, S3 prefix); such a change, or a Secret that no longer
// loads, is logged once and the previous dialer is kept. Dials are a few per upload, so reading a handful of small
// files each time costs nothing measurable. Nothing of the Secret is logged but its description (no credentials).
type reloadingDialer struct {
	path, node string
	typ        string // the type at start
	baseDir    string // the base directory at start
	log        logr.Logger

	mu      sync.Mutex
	sum     [sha256.Size]byte // of the content cur was built from
	cur     archiver.Dialer
	desc    string
	refused [sha256.Size]byte // the last content refused (logged once)
}

// newReloadingDialer loads the Secret at p and returns the dialer, the target the archiver names remote paths under
// and a description without credentials.
func newReloadingDialer(p, node string, log logr.Logger) (*reloadingDialer, archiver.Target, error) {
	sum, err := targetSum(p)
	if err != nil {
		return nil, archiver.Target{}, err
	}
	d, target, desc, typ, err := archiveDialer(p, node)
	if err != nil {
		return nil, archiver.Target{}, err
	}
	return &reloadingDialer{path: p, node: node, typ: typ, baseDir: target.BaseDir, log: log, sum: sum, cur: d, desc: desc}, target, nil
}

// Dial dials with the dialer of the Secret's current content (see the type).
func (r *reloadingDialer) Dial(ctx context.Context) (archiver.Remote, error) {
	return r.current().Dial(ctx)
}

// String describes the target in use, without credentials.
func (r *reloadingDialer) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.desc
}

func (r *reloadingDialer) current() archiver.Dialer {
	r.mu.Lock()
	defer r.mu.Unlock()
	sum, err := targetSum(r.path)
	if err != nil || sum == r.sum {
		return r.cur // unreadable now (mid-swap, or gone): the next dial reads it again
	}
	d, target, desc, typ, err := archiveDialer(r.path, r.node)
	switch {
	case err != nil:
		r.refuse(sum, "The archive target Secret changed but does not load; keeping the previous target", "err", err.Error())
	case typ != r.typ || target.BaseDir != r.baseDir:
		r.refuse(sum, "The archive target Secret changed its type or base directory; that takes a restart of keeplog, the previous target is kept",
			"type", typ, "baseDir", target.BaseDir, "typeInUse", r.typ, "baseDirInUse", r.baseDir)
	default:
		r.log.Info("The archive target Secret changed; the next connection uses it", "target", desc)
		r.sum, r.cur, r.desc = sum, d, desc
	}
	return r.cur
}

func (r *reloadingDialer) refuse(sum [sha256.Size]byte, msg string, kv ...any) {
	if sum != r.refused {
		r.log.Error(nil, msg, kv...)
		r.refused = sum
	}
}

// targetSum is a digest of the Secret's content: of the file p, or of every key file of the Secret volume directory
// p (names not starting with "." — kubelet's ..data links and timestamped directories are skipped), name and bytes.
func targetSum(p string) ([sha256.Size]byte, error) {
	st, err := os.Stat(p)
	if err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("read archive target: %w", err)
	}
	if !st.IsDir() {
		b, err := os.ReadFile(p)
		if err != nil {
			return [sha256.Size]byte{}, fmt.Errorf("read archive target: %w", err)
		}
		return sha256.Sum256(b), nil
	}
	ents, err := os.ReadDir(p)
	if err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("read archive target: %w", err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var all bytes.Buffer
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(p, n))
		if err != nil {
			return [sha256.Size]byte{}, fmt.Errorf("read archive target %s: %w", filepath.Join(p, n), err)
		}
		all.WriteString(n + "\x00" + strconv.Itoa(len(b)) + "\x00")
		all.Write(b)
	}
	return sha256.Sum256(all.Bytes()), nil
}
