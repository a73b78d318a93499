// Package certreload serves a TLS certificate and key from files that change while the process runs: a
// cert-manager rotation, or a Secret the chart changes, which kubelet applies to a mounted Secret volume by
// writing the new files into a fresh directory and swapping its ..data symlink. net/http's ServeTLS reads the pair
// once, so a rotated certificate would only be served after a restart (and an expired one until then).
//
// A Pair is a tls.Config's GetCertificate: at a handshake, at most once per interval, it reads both files again
// and compares their digest with the pair it serves; different content is parsed and served from then on. Reading
// the content (not watching or stat'ing the names) sees every way the files can change: the ..data swap, a file
// rewritten in place, a symlink pointed elsewhere. A pair that does not load (the certificate and key of two
// rotations half way through a write, a truncated file) changes nothing: the previous pair is served and the
// failure is logged once for that content, so a broken rotation never breaks serving and never floods the log.
//
// A CA is the same for a client's CA bundle (keeplog-api's --node-ca-file): read again at a connection at most once
// per interval, a bundle that does not parse keeping the previous one. Both log a broken file once per distinct
// content (or read error) and once when the files load again: a broken Secret stays broken for hours, and a line at
// every handshake or retry would bury everything else.
//
// keeplog-api serves its own pair (--tls-cert-file) from a Pair too: its Content is handed to k8s.io/apiserver's
// secure serving as a dynamiccertificates content (cmd/keeplog-api/servingcert.go). dynamiccertificates' own file
// content reloads the same way but logs a pair that does not load at every retry of its work queue, forever, and
// would link the API server's packages into the node plugin.
package certreload
