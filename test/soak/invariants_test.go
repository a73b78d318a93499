//go:build soak

package soak

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/keeplog/keeplog/test/binary"
)

// verdict is one checked invariant with its figure.
type verdict struct {
	name   string
	figure string
	ok     bool
	detail []string // examples, when it failed
}

// serverCopies groups what the server holds by pod UID and path inside the pod directory (the manifest's).
func serverCopies(inv binary.Inventory) map[string][]binary.ServerFile {
	out := map[string][]binary.ServerFile{}
	for _, f := range inv.Files {
		if !f.Missing {
			k := f.Manifest.UID + "/" + f.Manifest.Path
			out[k] = append(out[k], f)
		}
	}
	return out
}

// checkInvariants prints every invariant with its figure and fails the test for each one broken.
func (s *soakEnv) checkInvariants(idle idleFigures, probe verdict) {
	t := s.t
	inv, err := binary.ReadInventory(s.sftp.Server.DataDir)
	if err != nil {
		t.Fatalf("read the server's files: %v", err)
	}
	pods := s.load.snapshot()
	vs := s.archiveVerdicts(pods, inv)
	vs = append(vs, s.healthVerdicts()...)
	vs = append(vs, probe)
	vs = append(vs, idleVerdicts(idle, s.plan)...)
	logged := readFrom(s.kl.LogPath, 0)
	nodes := s.nodes.report(s.kl.Pid())
	nodes.countAtUpload(logged)
	vs = append(vs, nodes.verdicts()...)
	vs = append(vs, s.mountVerdicts(logged)...)
	vs = append(vs, s.retainedVerdicts(pods, inv)...)
	vs = append(vs, readLog(logged).verdicts(len(pods))...)
	s.logFacts(pods, inv, idle)
	for _, v := range vs {
		mark := "ok  "
		if !v.ok {
			mark = "FAIL"
		}
		t.Logf("%s %-58s %s", mark, v.name, v.figure)
		for i, d := range v.detail {
			if i == 8 {
				t.Logf("       … and %d more", len(v.detail)-i)
				break
			}
			t.Logf("       %s", d)
		}
	}
	for _, v := range vs {
		if !v.ok {
			t.Errorf("invariant broken: %s: %s", v.name, v.figure)
		}
	}
}

// archiveVerdicts: every dump on the server exactly once, with its sha256, before its directory went.
func (s *soakEnv) archiveVerdicts(pods []*podRun, inv binary.Inventory) []verdict {
	copies := serverCopies(inv)
	expected := map[string]bool{}
	var lost, deep, dupDetail, shaDetail, earlyDetail, lostDetail []string
	var nDumps, dups, early int
	swaps := s.swapVerdict(pods, copies, expected)
	for _, p := range pods {
		for _, d := range p.dumps {
			nDumps++
			k := p.pod.UID + "/" + d.rel
			expected[k] = true
			cs := copies[k]
			if len(cs) == 0 {
				lost = append(lost, k)
				lostDetail = append(lostDetail, fmt.Sprintf("%s %s depth %d, %d bytes", p.pod.Name, d.rel, d.depth, d.size))
				if d.depth > 32 {
					deep = append(deep, k)
				}
			}
			if len(cs) > 1 {
				dups += len(cs) - 1
				dupDetail = append(dupDetail, fmt.Sprintf("%s %s: %d copies", p.pod.Name, d.rel, len(cs)))
			}
			for _, c := range cs {
				if got := s.serverSHA(c); c.Manifest.SHA256 != d.sha || got != d.sha {
					shaDetail = append(shaDetail, fmt.Sprintf("%s: manifest %.12s, file %.12s, want %.12s", c.Rel, c.Manifest.SHA256, got, d.sha))
				}
			}
		}
		for _, rel := range p.missingAtVanish {
			early++
			earlyDetail = append(earlyDetail, fmt.Sprintf("%s %s (unpublished %s, gone %s)", p.pod.Name, rel,
				p.unpublishedAt.Format("15:04:05"), p.vanishedAt.Format("15:04:05.0")))
		}
	}
	var unexpected []string
	for k, cs := range copies {
		if !expected[k] {
			unexpected = append(unexpected, cs[0].Rel)
		}
	}
	sort.Strings(unexpected)
	return []verdict{swaps,
		{name: "dumps lost (not on the server)", ok: len(lost) == 0, detail: lostDetail,
			figure: fmt.Sprintf("%d of %d (%d of them deeper than 32 directories)", len(lost), nDumps, len(deep))},
		{name: "dumps whose directory was deleted before they were on the server", ok: early == 0, detail: earlyDetail,
			figure: fmt.Sprintf("%d", early)},
		{name: "duplicate uploads", ok: dups == 0, detail: dupDetail, figure: fmt.Sprintf("%d", dups)},
		{name: "server copies with a wrong sha256", ok: len(shaDetail) == 0, detail: shaDetail,
			figure: fmt.Sprintf("%d", len(shaDetail))},
		{name: "files uploaded that match no pattern", ok: len(unexpected) == 0, detail: unexpected,
			figure: fmt.Sprintf("%d", len(unexpected))},
	}
}

// swapVerdict: a dump replaced by a device or FIFO once settled may have been archived before the swap (then once,
// with its sha256) or not; either is right. Its key is marked expected.
func (s *soakEnv) swapVerdict(pods []*podRun, copies map[string][]binary.ServerFile, expected map[string]bool) verdict {
	var n, uploaded int
	var bad []string
	for _, p := range pods {
		for _, sw := range p.swapped {
			n++
			k := p.pod.UID + "/" + sw.rel
			expected[k] = true
			cs := copies[k]
			if len(cs) > 0 {
				uploaded++
			}
			if len(cs) > 1 {
				bad = append(bad, fmt.Sprintf("%s %s: %d copies", p.pod.Name, sw.rel, len(cs)))
			}
			for _, c := range cs {
				if got := s.serverSHA(c); c.Manifest.SHA256 != sw.sha || got != sw.sha {
					bad = append(bad, fmt.Sprintf("%s: manifest %.12s, file %.12s, want %.12s", c.Rel, c.Manifest.SHA256, got, sw.sha))
				}
			}
		}
	}
	return verdict{name: "dumps swapped for a node: on the server at most once, right sha256", ok: len(bad) == 0, detail: bad,
		figure: fmt.Sprintf("%d bad; %d of %d archived before their swap", len(bad), uploaded, n)}
}

func (s *soakEnv) serverSHA(c binary.ServerFile) string {
	sum, err := binary.FileSHA256(filepath.Join(s.sftp.Server.DataDir, c.Rel))
	if err != nil {
		return "unreadable: " + err.Error()
	}
	return sum
}

// healthVerdicts: /healthz always answered 200 while keeplog was up, and no loop's progress aged past the bound.
func (s *soakEnv) healthVerdicts() []verdict {
	h := s.health.Report()
	loops := verdict{name: "loops whose progress aged past " + s.plan.stallBound.String(), ok: true,
		figure: "keeplog exports no " + binary.MetricLoopProgress + " series: only /healthz applies"}
	if h.HasLoops {
		var stalled, all []string
		for loop, age := range h.MaxAge {
			all = append(all, fmt.Sprintf("%s %.0fs", loop, age))
			if age > s.plan.stallBound.Seconds() {
				stalled = append(stalled, fmt.Sprintf("%s: %.0fs", loop, age))
			}
		}
		sort.Strings(all)
		sort.Strings(stalled)
		loops.ok, loops.detail = len(stalled) == 0, stalled
		loops.figure = fmt.Sprintf("%d (oldest seen: %s)", len(stalled), strings.Join(all, ", "))
	}
	return []verdict{
		{name: "/healthz failures while keeplog was up", ok: len(h.Failures) == 0, detail: h.Failures,
			figure: fmt.Sprintf("%d of %d polls", len(h.Failures), h.Polls)},
		loops,
	}
}

// idleVerdicts: after the work settled, no overflow, no CPU, no status rewrite.
func idleVerdicts(f idleFigures, pl plan) []verdict {
	frac := f.cpu.Seconds() / f.window.Seconds()
	return []verdict{
		{name: "inotify overflows while idle", ok: f.overflows == 0,
			figure: fmt.Sprintf("%.0f (%s)", f.overflows, f.overflowsFrom)},
		{name: fmt.Sprintf("idle CPU of keeplog over the last %s ≤ %.0f%% of a core", f.window, pl.idleCPU*100),
			ok: frac <= pl.idleCPU && !f.restartedIn, figure: fmt.Sprintf("%.2f%% (%s CPU; RSS %d MiB; %d log lines)",
				frac*100, f.cpu, f.rss>>20, f.logLines)},
		{name: "status files rewritten while idle", ok: f.statusWrites == 0,
			figure: fmt.Sprintf("%.0f over %d status files (%s)", f.statusWrites, f.statusFiles, f.statusFrom)},
	}
}

// logFacts prints what the run did (figures, not invariants).
func (s *soakEnv) logFacts(pods []*podRun, inv binary.Inventory, idle idleFigures) {
	var dumps, bytes int64
	var vanished, undeleted, ephemeral int
	for _, p := range pods {
		for _, d := range p.dumps {
			dumps++
			bytes += d.size
		}
		if p.ephemeral {
			ephemeral++
		}
		switch {
		case !p.vanishedAt.IsZero():
			vanished++
		case !p.resident:
			undeleted++
		}
	}
	s.t.Logf("ran: %d pods (%d inline ephemeral), %d dumps, %d MiB; %d directories deleted by the GC, %d unpublished not deleted at the end; keeplog SIGKILLed %d times, sshd restarted %d times; %d upload temporaries left on the server",
		len(pods), ephemeral, dumps, bytes>>20, vanished, undeleted, s.kills, s.sshdRestarts, len(inv.Temps))
}
