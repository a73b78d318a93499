// Package jitter gives each of many like things (pod directories) its own fixed offset within a period, so that
// work done periodically for each of them (the archiver's rescan of a retained directory, the garbage collector's
// re-measurement of its size) spreads over the period instead of coming back all at once for the thousands that
// appeared together. The offset is a hash of the thing's name: the same at every pass and after a restart (no
// state, no random source to inject), different between names.
package jitter
