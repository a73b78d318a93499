// Package retrievalapi is the aggregated API retainedpods.keeplog.csi.io/v1alpha1 that keeplog-api serves
// (docs/retrieval.md): who may see which retained pod directory, and the proxy of their bytes from the node plugin
// that holds them.
//
// Identity is the API server's: the request reaches keeplog-api through the kube-apiserver aggregator, whose
// front-proxy client certificate k8s.io/apiserver's request-header authenticator checks before it believes the
// X-Remote-User/-Group/-Extra headers (cmd/keeplog-api wires it; a client that calls keeplog-api directly with
// forged headers has no such certificate and is anonymous). This package only reads the user the authenticator put
// in the request's context and refuses an anonymous one.
//
// Authorization is Kubernetes' own yardstick for a pod's logs: the user must be allowed `get pods/log` in the pod's
// namespace (an Authorizer: the delegating SubjectAccessReview authorizer in production, which also lets
// system:masters through). A cluster-wide list asks once per namespace found and leaves out the namespaces refused,
// so a user sees exactly the pods whose logs they could read, and nothing else of the cluster.
//
// The pods are found by asking every node plugin's read endpoint (pkg/retrieval, its JSON in pkg/retrieval/wire)
// with keeplog-api's own token: the disk stays the one source of truth, and nothing is written anywhere on publish.
// Files are streamed from the node to the client as they come (Range and If-Range passed through), never held.
package retrievalapi
