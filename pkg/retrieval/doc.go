// Package retrieval is the node plugin's read endpoint for retained pod directories (issue #16, docs/retrieval.md):
// the one place where bytes a pod wrote leave the node on request. keeplog-api (the aggregated API server) calls it
// after it has checked that the real user may `get pods/log` in the pod's namespace; this package trusts nobody
// itself: the caller is authenticated and authorized by internal/httpauth (TokenReview, then a SubjectAccessReview
// for the non-resource URL /retained/...), wired in cmd/keeplog.
//
// Why it is careful: keeplog runs as root and the files were written by an untrusted pod, which may have planted a
// symlink to /etc/shadow, a FIFO that blocks a reader forever, a device node, or a bind mount. So
//   - a pod directory is addressed by the name keeplog's records know, never by a client's path;
//   - a file path is split into components, each checked by safefs.CheckName (no "..", ".", empty, NUL, slash);
//   - each directory is entered with safefs.OpenSubdirAt (no symlink, no other mount) and the file opened with
//     safefs.OpenFileAt (type proven on an O_PATH descriptor before the real open: a device or FIFO is never
//     opened), and a file on another mount than the pod directory (a bind-mounted file) is refused;
//   - listings use safefs.Walk, which reports symlinks and special files without opening them.
//
// What a listing says besides the records: each directory's expiry, computed as the garbage collector does
// (unpublish time plus the policy's retention: pkg/policy, not pkg/gc, so no feature package is imported), and its
// archive state, the archiver's status file in .keeplog/ counted by state (read like every pod file, so a symlink
// planted there is not followed).
//
// Why it is bounded: files are streamed by http.ServeContent from the descriptor (a fixed buffer, Range and If-Range
// honoured so an interrupted download of a heap dump resumes), every read waits on one token bucket shared by all
// downloads of the node, and only MaxStreams files are streamed at once (more are answered 429), so a download
// cannot starve the node's disk or network.
package retrieval
