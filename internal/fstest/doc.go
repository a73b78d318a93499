// Package fstest holds the filesystem fixtures that several packages' tests need, so that each is written (and
// reviewed) once: an inotify probe that tells whether a node was opened, a bind mount that is always undone, the
// garbage collector's trash churn, and a Secret volume laid out and changed as kubelet does (..data swapped), which
// the credentials and certificates keeplog reloads without a restart are read from.
//
// Why these exist: keeplog runs as root on trees that untrusted pods wrote. "Never open a device node or FIFO" and
// "never cross a mount" are properties no return value shows, so tests observe them from the outside: IN_OPEN on
// the node itself, a real bind mount inside a pod directory. The churn reproduces what the GC does to watchers
// (directories with watched sub-directories renamed away and removed), which wedged fsnotify users before.
//
// It is test support: only _test.go files import it. It needs root for mknod and mount; callers skip as they see
// fit.
package fstest
