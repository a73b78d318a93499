// Package heapdumps makes real JVM heap dumps for the archive tests and the benchmark: HeapFill.java (embedded) is
// compiled with the machine's javac, run with a heap sized for the wanted dump, and dumped with `jcmd <pid>
// GC.heap_dump` while its objects are live. Random bytes would tell nothing about compression; these files are
// what a user's dumps look like (object headers, references, strings, maps, records, byte buffers).
//
// A dump takes a minute or more to make, so each one is cached by (size, seed) under $KEEPLOG_CACHE/heapdumps
// (default ~/.cache/keeplog/heapdumps), never in the checkout, with a small JSON record beside it (its size, sha256
// and what `zstd -3` makes of it), so a caller can print those figures without reading the dump again. The same
// (size, seed) gives the same object graph, not the same bytes (addresses differ between JVM runs), which is why a
// cached file is reused rather than remade.
package heapdumps
