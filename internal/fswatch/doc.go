// Package fswatch watches directories with inotify so that a node with pods writing costs keeplog a few wake-ups a
// second, not one per write, and so that the watcher never waits for keeplog.
//
// Why not fsnotify: fsnotify reads its inotify descriptor through Go's netpoller as soon as it is readable and hands
// each event to the consumer on a channel, so 100 pods appending a line a second woke keeplog (the reader, the
// consumer, and the runtime's scheduler and sysmon around them) about 200 times a second for its two watchers: most
// of its CPU on such a node. It cannot be asked to read less often. fsnotify (v1.10) also sends on its unbuffered
// Errors channel while holding the mutex that Add and Remove take (after IN_MOVE_SELF of a directory whose watch is
// already gone, which keeplog's own garbage collector causes by renaming pod directories into its trash), so a
// consumer that adds watches while it must also read Errors deadlocks.
//
// Here one goroutine per Watcher waits in poll(2) until the descriptor is readable, then lets the kernel queue
// events for Coalesce before it reads them all at once (the kernel merges repeats of the same event meanwhile), and
// goes on reading every Coalesce while they keep coming; it records the changed names in a set under a short mutex
// of its own, and the consumer takes them in batches (Ready, Take). While it waits nothing in keeplog runs at all.
// Add and Remove are plain system calls under that mutex: they never wait for the reader or the consumer. A kernel
// queue overflow (or too many pending names) is remembered as a flag, so the consumer rescans instead of trusting
// what it lost.
//
// Events are reported as this package's own Op (Create, Write, Remove, Rename, Chmod), with the meaning fsnotify
// gives the same names, so that nothing of fsnotify is linked into keeplog (test/arch checks it is not).
//
// A batch keeps names in the order they were first seen and joins each name's ops: it does not say in which order
// one name's ops came, nor where among the other names a file created and gone within one Coalesce went
// (fstest.TempWatch, which counts upload temporaries live at once, is written with that in mind).
package fswatch
