// Package otelcoltest runs the real OpenTelemetry Collector (the filelog receiver users run with keeplog's shipped
// snippet, and a file exporter) for tests, so that what the snippet promises ("every line exactly once") is checked
// against the receiver's own file tracking (fingerprints, the files it remembers between polls), not a model of it.
//
// The binary is built from the Go module proxy by hack/build-otelcol.sh (make otelcol) and cached in
// $KEEPLOG_CACHE/bin/otelcol-<version>/otelcol ($KEEPLOG_OTELCOL overrides it). When it is missing the test fails
// and says how to build it: it never skips. The collector's own telemetry is off, so it listens on nothing; the
// process is stopped by its PID (Stop, and t.Cleanup).
package otelcoltest
