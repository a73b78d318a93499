package usage

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/keeplog/keeplog/internal/units"
	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/policy"
	"github.com/keeplog/keeplog/pkg/store"
)

type podEvent struct {
	pod                  store.PodRef
	typ, reason, message string
}

type enforcement struct {
	volumeID, dir, path string
	pod                 *store.PodRef
	block               bool
}

// evaluate compares every volume with its limit, sends the Events a change calls for and blocks or unblocks pod
// directories. A volume's directories are blocked only while it is over its limit with limitAction block, and only
// those that are published (a pod writes there) and older than BlockGrace; a directory whose pod is gone is
// released, so retention and deletion can remove it.
func (t *Tracker) evaluate() {
	now := t.deps.Clock.Now()
	var events []podEvent
	var acts []enforcement
	t.mu.Lock()
	// Only volumes whose usage or records changed, and those over their limit (a directory's block grace ends
	// with time alone): the cost is what changed, however many volumes the node keeps.
	// t.overIDs, not a loop over every volume: evaluate runs after each pod directory of a walk, and a loop over
	// 20,000 volumes 20,000 times was a third of the first walk's CPU.
	for id := range t.overIDs {
		t.touched[id] = struct{}{}
	}
	ids := slices.Sorted(maps.Keys(t.touched))
	clear(t.touched)
	for _, id := range ids {
		v := t.vols[id]
		if v == nil {
			continue
		}
		t.evaluations.Add(1)
		s := t.statusLocked(v)
		over := v.limit > 0 && s.Bytes > v.limit
		enforce := over && v.action == policy.LimitBlock && t.deps.Enforcer != nil
		switch {
		case over && !v.over:
			t.deps.Log.Info("Volume is over its limit", "volume", id, "usedBytes", s.Bytes, "limitBytes", v.limit, "limitAction", v.action)
			t.m.exceeded.WithLabelValues(id).Inc()
		case !over && v.over:
			t.deps.Log.Info("Volume is back under its limit", "volume", id, "usedBytes", s.Bytes, "limitBytes", v.limit)
			for _, name := range v.dirs {
				if d := t.dirs[name]; d != nil && d.pod != nil && v.notified[name] {
					events = append(events, podEvent{*d.pod, "Normal", api.ReasonVolumeBackUnderLimit, fmt.Sprintf(
						"keeplog volume %s uses %s, under its limit of %s again", id, units.Bytes(s.Bytes), units.Bytes(v.limit))})
				}
			}
			clear(v.notified)
		}
		v.over = over
		if over {
			t.overIDs[id] = struct{}{}
		} else {
			delete(t.overIDs, id)
		}
		for _, name := range v.dirs {
			d := t.dirs[name]
			if d == nil {
				continue
			}
			if over && v.published[name] && d.pod != nil && !v.notified[name] {
				if v.notified == nil {
					v.notified = map[string]bool{}
				}
				v.notified[name] = true
				events = append(events, podEvent{*d.pod, "Warning", api.ReasonVolumeOverLimit, overMessage(id, s, v, t.deps.Enforcer != nil)})
			}
			want := enforce && v.published[name] && d.present && now.Sub(d.seen) >= t.cfg.BlockGrace
			block := want && (!d.blocked || d.usage.Inodes > d.blockedAt.Inodes)
			if !block && (want || !d.blocked) {
				continue // nothing to do: the path is not needed
			}
			path, err := t.deps.Store.PodDirPath(name)
			if err != nil {
				continue
			}
			acts = append(acts, enforcement{volumeID: id, dir: name, path: path, pod: d.pod, block: block})
		}
	}
	release := t.release
	t.release = nil
	t.mu.Unlock()

	for _, e := range events {
		if t.deps.Events != nil {
			t.deps.Events.PodEvent(e.pod, e.typ, e.reason, e.message)
		}
	}
	for _, p := range release {
		if t.deps.Enforcer == nil {
			break
		}
		if err := t.deps.Enforcer.Unblock(p); err != nil {
			t.m.enforceErrors.WithLabelValues("unblock").Inc()
			t.deps.Log.Error(err, "Could not unblock the directory of a deleted volume", "dir", p)
		}
	}
	for _, a := range acts {
		t.enforce(a)
	}
}

// enforce runs one Block or Unblock and records the outcome.
func (t *Tracker) enforce(a enforcement) {
	op, run := "unblock", t.deps.Enforcer.Unblock
	if a.block {
		op, run = "block", t.deps.Enforcer.Block
	}
	err := run(a.path)
	t.mu.Lock()
	d := t.dirs[a.dir]
	first := d != nil && a.block && !d.blocked
	if d != nil {
		// Even a partly failed Block leaves some attributes set: count the directory as blocked so it is released.
		d.blocked = a.block
		if a.block && d.present {
			d.blockedAt = d.usage
		}
	}
	t.mu.Unlock()
	if err != nil {
		t.m.enforceErrors.WithLabelValues(op).Inc()
		t.deps.Log.Error(err, "Could not enforce the volume's limit", "operation", op, "volume", a.volumeID, "dir", a.path)
		if a.pod != nil && t.deps.Events != nil && first {
			t.deps.Events.PodEvent(*a.pod, "Warning", api.ReasonVolumeLimitEnforcementFailed, fmt.Sprintf(
				"keeplog could not %s writes to volume %s: %v", op, a.volumeID, err))
		}
	}
	switch {
	case first:
		t.deps.Log.Info("Pod directory blocked: its volume is over its limit", "volume", a.volumeID, "dir", a.path, "enforcer", t.deps.Enforcer.Name())
		if a.pod != nil && t.deps.Events != nil {
			t.deps.Events.PodEvent(*a.pod, "Warning", api.ReasonVolumeBlocked, fmt.Sprintf(
				"keeplog blocked writes to volume %s (limitAction block): files there cannot be written, created or deleted until the volume is back under its limit", a.volumeID))
		}
	case !a.block:
		t.deps.Log.Info("Pod directory unblocked", "volume", a.volumeID, "dir", a.path)
	}
}

// adoptBlocks takes over the blocks a previous run left (the Enforcer's record); evaluate then keeps or releases them.
func (t *Tracker) adoptBlocks() {
	if t.deps.Enforcer == nil {
		return
	}
	paths, err := t.deps.Enforcer.Blocked()
	if err != nil {
		t.deps.Log.Error(err, "Could not list the pod directories a previous run blocked")
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range paths {
		name, ok := strings.CutPrefix(p, t.root+"/")
		if d := t.dirs[name]; ok && d != nil {
			d.blocked = true
			t.touched[d.volumeID] = struct{}{}
			continue
		}
		t.release = append(t.release, p)
	}
}

func overMessage(id string, s Status, v *volState, canBlock bool) string {
	msg := fmt.Sprintf("keeplog volume %s uses %s, over its limit of %s; ", id, units.Bytes(s.Bytes), units.Bytes(v.limit))
	switch {
	case v.action == policy.LimitBlock && canBlock:
		return msg + "limitAction block: writes will be blocked until usage is back under the limit"
	case v.action == policy.LimitBlock:
		return msg + "limitAction block, but this node has no way to block writes: nothing is stopped"
	default:
		return msg + "limitAction warn: nothing is stopped"
	}
}
