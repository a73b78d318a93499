// Package retrievaltest holds the fixtures the read path's tests share (pkg/retrieval, pkg/retrievalapi,
// cmd/kubectl-keeplog), so each is written and reviewed once: a retained pod directory recorded in a real store with
// the files a test wants in it, and the "may get pods/log in this namespace" authorizer that stands in for the API
// server's SubjectAccessReview.
//
// Why real stores: the node endpoint answers from keeplog's own records and opens what they name, so a fixture that
// faked the records would test nothing the node does. Only the authorizer is a stand-in; the e2e (test/e2e
// TestKubectlKeeplog) asks the real API server.
//
// It is test support: only _test.go files import it.
package retrievaltest
