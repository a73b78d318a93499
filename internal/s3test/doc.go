// Package s3test starts a real S3-speaking server for tests: SeaweedFS's `weed server -s3` (master, volume server,
// filer and S3 gateway in one process) on 127.0.0.1, with its own data directory, one identity with generated
// credentials and one bucket. It is a real server, not an in-process fake, so that the S3 archive path meets the
// wire protocol, signatures, Content-MD5 checks and multipart semantics of a server that was not written for
// keeplog.
//
// The binary is built from the Go module proxy by hack/build-seaweedfs.sh (make seaweedfs) and cached in
// $KEEPLOG_CACHE/bin/weed-<version>/weed. When it is missing the test fails and says how to build it: it never
// skips. The process is stopped by its PID (Stop, and t.Cleanup), and Start brings it back on the same ports and
// data, so that tests can take the server away in the middle of an upload.
//
// A test reads an object's bytes back with a client keeplog does not use, Debian's rclone (Rclone, RcloneSHA256),
// and lists the bucket with minio-go (Objects, Uploads). These return errors rather than fail the test, so that
// they can be called from a poll or a subtest.
package s3test
